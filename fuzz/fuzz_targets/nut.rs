//! Any text through the upsd reply parser: typed errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewarden_agent::ups::nut::protocol::{
    MAX_LINE_LEN, parse_list, parse_reply_line, quote, split_words,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        if let Ok(words) = split_words(line) {
            // Quoting each word and splitting again gives the words back.
            let requoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
            let line = requoted.join(" ");
            if line.len() <= MAX_LINE_LEN {
                assert_eq!(split_words(&line).ok(), Some(words));
            }
        }
        let _ = parse_reply_line(line);
    }
    for query in [&["UPS"][..], &["VAR", "ups"][..], &["CMD", "ups"][..]] {
        if let Ok(items) = parse_list(&lines, query) {
            assert!(items.len() + 2 <= lines.len());
        }
    }
});
