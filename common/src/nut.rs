//! The word layer of NUT's network protocol, shared by the agent (a client
//! of upsd) and the collector (a server to NUT clients): lines split the
//! way NUT's parseconf splits them, and values quoted the way upsd quotes.

/// Why a line cannot be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("unterminated quoted string starting at column {column}")]
    UnterminatedQuote { column: usize },
    #[error("the line ends in a lone backslash")]
    TrailingBackslash,
}

/// Splits one line into words: blanks separate words, "quoted strings"
/// keep their blanks, a backslash takes the next character literally
/// (so \" and \\).
pub fn split_words(line: &str) -> Result<Vec<String>, WordError> {
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ' ' || c == '\t' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
        }
        let mut closed = !quoted;
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => word.push(escaped),
                    None => return Err(WordError::TrailingBackslash),
                },
                '"' if quoted => {
                    closed = true;
                    break;
                }
                ' ' | '\t' if !quoted => break,
                c => word.push(c),
            }
        }
        if !closed {
            return Err(WordError::UnterminatedQuote { column: start + 1 });
        }
        words.push(word);
    }
    Ok(words)
}

/// A value in "quotes" with `"` and `\` escaped (NUT's pconf_encode).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_split() {
        for v in ["plain", "two words", r#"q"uote"#, r"back\slash", ""] {
            let line = format!("X {}", quote(v));
            assert_eq!(split_words(&line).unwrap()[1], v);
        }
        assert_eq!(split_words("a \\"), Err(WordError::TrailingBackslash));
        assert_eq!(
            split_words("a \"b"),
            Err(WordError::UnterminatedQuote { column: 3 })
        );
    }
}
