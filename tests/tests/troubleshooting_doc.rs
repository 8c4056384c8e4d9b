//! Every message docs/troubleshooting.md quotes (the lines of its `message`
//! blocks) is still written by the code: reword a message in the source and
//! this fails until the page follows. A quoted message is split at its
//! `{placeholders}`; each piece must occur in one string literal of the
//! crates' `src/` (with `{CONST}` placeholders there replaced by the
//! constant's text, as `format!` does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (line number, text) of every line inside a ```message block.
fn quoted_messages(doc: &str) -> Vec<(usize, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            inside = !inside && line.trim() == "```message";
        } else if inside && !line.trim().is_empty() {
            out.push((i + 1, line.to_string()));
        }
    }
    out
}

/// The pieces of a quoted message between its `{placeholders}` that hold
/// words (": " alone proves nothing).
fn pieces(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = message;
    loop {
        let (text, tail) = match rest.find('{') {
            Some(open) => (
                &rest[..open],
                rest[open..].find('}').map(|c| &rest[open + c + 1..]),
            ),
            None => (rest, None),
        };
        if text.chars().any(char::is_alphanumeric) {
            out.push(text.to_string());
        }
        match tail {
            Some(t) => rest = t,
            None => return out,
        }
    }
}

/// Every string literal in the Rust files under `dir`, unescaped, with the
/// name of the `const` it initialises, if any. Test files are left out: an
/// assertion quoting a message must not keep it alive.
fn literals(dir: &Path, out: &mut Vec<(Option<String>, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "tests" {
                literals(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            scan(&std::fs::read_to_string(&path).unwrap(), out);
        }
    }
}

/// A small Rust lexer: enough to find string literals past comments and
/// char literals such as '"'.
fn scan(src: &str, out: &mut Vec<(Option<String>, String)>) {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('"', '\'', '\n'); a lifetime has no closing quote.
                let end = src[i + 1..].find('\'').map_or(i + 1, |e| i + 1 + e);
                i = if b.get(i + 1) == Some(&b'\\') {
                    end + 2
                } else {
                    end + 1
                };
                continue;
            }
            b'"' => {
                let before = &src[src[..i].rfind(['\n', ';', '{']).unwrap_or(0)..i];
                let constant = before
                    .split_once("const ")
                    .and_then(|(_, c)| c.split(':').next())
                    .map(|c| c.trim().to_string());
                let (text, end) = string_at(src, i + 1);
                out.push((constant, text));
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The unescaped literal starting after the quote at `start`, and the index
/// of its closing quote.
fn string_at(src: &str, start: usize) -> (String, usize) {
    let mut text = String::new();
    let mut chars = src[start..].char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (text, start + at),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                // A line continuation: the newline and the next line's indent go.
                Some('\n') => {
                    while chars.peek().is_some_and(|(_, w)| w.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => text.push(other),
                None => break,
            },
            _ => text.push(c),
        }
    }
    (text, src.len())
}

/// Every literal of the crates, with `{CONST}` replaced by the constant.
fn source_texts() -> Vec<String> {
    let mut all = Vec::new();
    for krate in ["agent", "collector", "common", "proto"] {
        literals(&repo().join(krate).join("src"), &mut all);
    }
    let consts: HashMap<String, String> = all
        .iter()
        .filter_map(|(c, t)| c.clone().map(|c| (c, t.clone())))
        .collect();
    all.into_iter()
        .map(|(_, mut text)| {
            for (name, value) in &consts {
                text = text.replace(&format!("{{{name}}}"), value);
            }
            text
        })
        .collect()
}

#[test]
fn every_quoted_message_is_still_in_the_source() {
    let doc = std::fs::read_to_string(repo().join("docs/troubleshooting.md")).unwrap();
    let messages = quoted_messages(&doc);
    assert!(
        messages.len() >= 15,
        "too few quoted messages: {messages:?}"
    );
    let texts = source_texts();
    let missing: Vec<String> = messages
        .iter()
        .flat_map(|(line, m)| pieces(m).into_iter().map(move |p| (line, p)))
        .filter(|(_, p)| !texts.iter().any(|t| t.contains(p.as_str())))
        .map(|(line, p)| format!("docs/troubleshooting.md:{line}: {p:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "quoted in the troubleshooting page but written nowhere in the source (reworded? update the page):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_failure_section_quotes_what_the_user_sees() {
    let doc = std::fs::read_to_string(repo().join("docs/troubleshooting.md")).unwrap();
    let sections: Vec<&str> = doc.split("\n## ").skip(1).collect();
    assert!(sections.len() >= 10, "{} sections", sections.len());
    for s in sections {
        assert!(
            s.contains("```message\n"),
            "section `{}` quotes no message",
            s.lines().next().unwrap_or("")
        );
    }
}

#[test]
fn the_check_can_fail() {
    let texts = source_texts();
    let found = |p: &str| texts.iter().any(|t| t.contains(p));
    // A reworded message is not found; the real one, split at a
    // placeholder and with a constant filled in, is.
    assert!(!found("add the nodewarden user to the group dialout"));
    assert!(found("; add the nodewarden user to group dialout"));
    assert!(found("or pass --socket / set NODEWARDEN_SOCKET"));
    assert_eq!(
        pieces("cannot open {port}: {error}; no such device"),
        ["cannot open ", "; no such device"]
    );
    assert_eq!(
        quoted_messages("a\n```message\none\n\ntwo\n```\n```sh\nthree\n```\n"),
        [(3, "one".to_string()), (5, "two".to_string())]
    );
}
