//! Reading the kernel's numeric text byte by byte. procfs prints plain
//! ASCII (`%llu`, `%lu.%02lu`, space-padded columns), so the per-sample
//! parsers split on ASCII blanks and read digits directly, instead of going
//! through `str`'s Unicode-aware splitting and trimming: less code run on
//! every sample, and what runs is a few tight loops.

/// The lines of `text`, without their `\n`.
pub fn lines(text: &str) -> impl Iterator<Item = &[u8]> {
    text.as_bytes().split(|b| *b == b'\n')
}

/// The fields of `line`, separated by runs of spaces or tabs.
pub fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty())
}

/// `bytes` before and after the first `separator`, if there is one.
pub fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// A field that is all decimal digits, as u64; `None` for anything else
/// (a sign, a letter, nothing, or a value past u64).
pub fn unsigned(word: &[u8]) -> Option<u64> {
    if word.is_empty() {
        return None;
    }
    word.iter().try_fold(0u64, |n, b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A field like `-5000` or `48312` (a sysfs temperature), as i64.
pub fn signed(word: &[u8]) -> Option<i64> {
    match word.strip_prefix(b"-") {
        Some(magnitude) => 0i64.checked_sub_unsigned(unsigned(magnitude)?),
        None => i64::try_from(unsigned(word)?).ok(),
    }
}

/// A field like `1.50` or `12` (digits, at most one point), as f64:
/// the digits as one integer divided once by a power of ten, which rounds
/// exactly as `str::parse::<f64>` does for the kernel's few decimals.
pub fn decimal(word: &[u8]) -> Option<f64> {
    let (whole, fraction) = match split_once(word, b'.') {
        Some((_, b"")) => return None,
        Some(parts) => parts,
        None => (word, &b""[..]),
    };
    // More than 15 digits could pass f64's exact integers; the kernel
    // prints far fewer, and anything else is garbage here.
    if whole.len() + fraction.len() > 15 {
        return None;
    }
    let mut digits = unsigned(whole)?;
    if !fraction.is_empty() {
        digits = digits * 10u64.pow(fraction.len() as u32) + unsigned(fraction)?;
    }
    Some(digits as f64 / 10f64.powi(fraction.len() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_only() {
        assert_eq!(unsigned(b"0"), Some(0));
        assert_eq!(unsigned(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(unsigned(b"18446744073709551616"), None);
        for bad in [&b""[..], b"-1", b"+1", b"1a", b" 1", b"\xe2\x80\x83"] {
            assert_eq!(unsigned(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signed_values_as_sysfs_prints_them() {
        assert_eq!(signed(b"48312"), Some(48_312));
        assert_eq!(signed(b"-5000"), Some(-5_000));
        assert_eq!(signed(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(signed(b"9223372036854775808"), None);
        for bad in [&b"-"[..], b"--1", b"+1", b"4 2"] {
            assert_eq!(signed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_match_str_parse() {
        for text in [
            "0.00", "1.50", "12.34", "99.99", "100.00", "7", "0.07", "3.1415",
        ] {
            let expected: f64 = text.parse().unwrap();
            assert_eq!(decimal(text.as_bytes()), Some(expected), "{text}");
        }
        for bad in [
            "",
            ".5",
            "1.",
            "1.2.3",
            "-1.00",
            "1e3",
            "nan",
            "1234567890123456",
        ] {
            assert_eq!(decimal(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn every_pressure_percent_rounds_to_the_f32_parsing_gives() {
        for hundredths in 0..=10_000u32 {
            let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
            let expected: f32 = text.parse().unwrap();
            assert_eq!(
                decimal(text.as_bytes()).map(|p| p as f32),
                Some(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn words_skip_runs_of_blanks() {
        let line = b"cpu  10\t 20   30";
        let w: Vec<&[u8]> = words(line).collect();
        assert_eq!(w, [&b"cpu"[..], b"10", b"20", b"30"]);
        assert_eq!(lines("a\nb\n").collect::<Vec<_>>(), [&b"a"[..], b"b", b""]);
    }
}
