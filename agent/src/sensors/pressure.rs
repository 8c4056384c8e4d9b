//! Pressure stall information from /proc/pressure/{cpu,memory,io}.
//! Absent on Raspberry Pi OS kernels unless booted with psi=1.

use nodewarden_proto::v1::PressureLine;

use super::ascii;

/// The `some` and `full` lines of one pressure file. The kernel has printed
/// a `full` line for cpu too since 5.13; the protocol has no place for it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PressureFile {
    pub some: Option<PressureLine>,
    pub full: Option<PressureLine>,
}

/// Parses "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" lines. `None` if
/// neither line parses.
pub fn parse_pressure(text: &str) -> Option<PressureFile> {
    let mut out = PressureFile::default();
    for line in ascii::lines(text) {
        let Some((kind, rest)) = ascii::split_once(line, b' ') else {
            continue;
        };
        let slot = match kind {
            b"some" => &mut out.some,
            b"full" => &mut out.full,
            _ => continue,
        };
        *slot = Some(parse_line(rest)?);
    }
    (out.some.is_some() || out.full.is_some()).then_some(out)
}

fn parse_line(rest: &[u8]) -> Option<PressureLine> {
    let mut line = PressureLine::default();
    let mut seen = 0u8;
    // "%lu.%02lu": a percent has a few digits, so its f64 is exact enough
    // to round to the same f32 that parsing the text as f32 gives.
    let percent = |value: &[u8]| ascii::decimal(value).map(|p| p as f32);
    for pair in ascii::words(rest) {
        let (key, value) = ascii::split_once(pair, b'=')?;
        match key {
            b"avg10" => line.avg10_percent = percent(value)?,
            b"avg60" => line.avg60_percent = percent(value)?,
            b"avg300" => line.avg300_percent = percent(value)?,
            b"total" => {
                let micros = ascii::unsigned(value)?;
                line.total_seconds = micros as f64 / 1e6;
            }
            _ => continue,
        }
        seen += 1;
    }
    (seen == 4).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=1.50 avg60=0.75 avg300=0.20 total=12345678\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n";
        let p = parse_pressure(text).unwrap();
        let some = p.some.unwrap();
        assert_eq!(some.avg10_percent, 1.5);
        assert_eq!(some.total_seconds, 12.345678);
        assert_eq!(p.full.unwrap().total_seconds, 2.5);
        assert!(parse_pressure("some avg10=x avg60=0 avg300=0 total=0\n").is_none());
        assert!(parse_pressure("").is_none());
    }
}
