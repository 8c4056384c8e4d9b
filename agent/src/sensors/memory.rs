//! Memory from /proc/meminfo (values in KiB).

use nodewarden_proto::v1::Memory;

use super::ascii;

/// Parses /proc/meminfo. `None` without MemTotal and MemAvailable: a
/// "used" figure computed without MemAvailable would be wrong (kernels
/// older than 3.14 lack it), so none is better than a misleading one.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let mut m = Memory::default();
    let (mut total, mut available) = (false, false);
    let mut found = 0;
    for line in ascii::lines(text) {
        let Some((key, rest)) = ascii::split_once(line, b':') else {
            continue;
        };
        let field = match key {
            b"MemTotal" => {
                total = true;
                &mut m.total_bytes
            }
            b"MemAvailable" => {
                available = true;
                &mut m.available_bytes
            }
            b"MemFree" => &mut m.free_bytes,
            b"Buffers" => &mut m.buffers_bytes,
            b"Cached" => &mut m.cached_bytes,
            b"SwapTotal" => &mut m.swap_total_bytes,
            b"SwapFree" => &mut m.swap_free_bytes,
            _ => continue,
        };
        *field = kib_value(rest)?;
        found += 1;
        // SwapFree comes after every other key we want; stop reading there.
        if found == 7 {
            break;
        }
    }
    (total && available).then_some(m)
}

/// "   3884244 kB" → bytes.
fn kib_value(rest: &[u8]) -> Option<u64> {
    let mut words = ascii::words(rest);
    let n = ascii::unsigned(words.next()?)?;
    match words.next() {
        Some(b"kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_and_needs_mem_available() {
        let text = "MemTotal:        3884244 kB\nMemFree:         2210776 kB\n\
                    MemAvailable:    3287900 kB\nBuffers:           61108 kB\n\
                    Cached:          1092964 kB\nSwapCached:            0 kB\n\
                    SwapTotal:        204796 kB\nSwapFree:         204796 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total_bytes, 3_884_244 * 1024);
        assert_eq!(m.available_bytes, 3_287_900 * 1024);
        assert_eq!(m.free_bytes, 2_210_776 * 1024);
        assert_eq!(m.swap_free_bytes, 204_796 * 1024);
        assert!(parse_meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n").is_none());
        assert!(parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB\n").is_none());
    }
}
