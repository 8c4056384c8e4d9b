//! Memory from /proc/meminfo (values in KiB).

use nodewarden_proto::v1::Memory;

/// Parses /proc/meminfo. `None` without MemTotal and MemAvailable: a
/// "used" figure computed without MemAvailable would be wrong (kernels
/// older than 3.14 lack it), so none is better than a misleading one.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let mut m = Memory::default();
    let (mut total, mut available) = (false, false);
    let mut found = 0;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "MemTotal" => {
                total = true;
                &mut m.total_bytes
            }
            "MemAvailable" => {
                available = true;
                &mut m.available_bytes
            }
            "MemFree" => &mut m.free_bytes,
            "Buffers" => &mut m.buffers_bytes,
            "Cached" => &mut m.cached_bytes,
            "SwapTotal" => &mut m.swap_total_bytes,
            "SwapFree" => &mut m.swap_free_bytes,
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
fn kib_value(rest: &str) -> Option<u64> {
    let mut words = rest.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => n.checked_mul(1024),
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
