//! The Raspberry Pi firmware's mailbox property interface through /dev/vcio:
//! building request buffers and checking replies. The ioctl itself is in
//! `syscall`.
//!
//! A message is: u32 total size in bytes, u32 request code (0 = process
//! request; the reply puts 0x80000000 for success, 0x80000001 for a parse
//! error), then tags, each u32 tag id, u32 value buffer size in bytes, u32
//! request/response code (0 in a request; the reply sets bit 31 and the
//! value length in bits 0-30), the value buffer; and a u32 0 end tag.
//!
//! Test seam: a fixture root (not the real system) has no /dev/vcio to
//! ioctl; there the firmware is emulated from two text files holding the
//! values it would return:
//!   `<root>/dev/vcio.get_throttled`      the get_throttled word ("0x50005")
//!   `<root>/dev/vcio.clock_measured_arm` the measured ARM clock in Hz
//! The emulation fills in the same reply buffer the firmware would, so the
//! decode path below is the one used on a real Pi.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::syscall;
use crate::sysroot::SysRoot;

/// GET_THROTTLED: u32 in (a mask of sticky bits to clear; we clear none),
/// u32 out (the throttled word).
pub const TAG_GET_THROTTLED: u32 = 0x0003_0046;
/// GET_CLOCK_MEASURED: u32 clock id in; u32 clock id, u32 rate in Hz out.
pub const TAG_GET_CLOCK_MEASURED: u32 = 0x0003_0047;
/// The ARM cores' clock.
pub const CLOCK_ARM: u32 = 3;

const REQUEST: u32 = 0;
const STATUS_SUCCESS: u32 = 0x8000_0000;
const TAG_RESPONSE: u32 = 1 << 31;
const END_TAG: u32 = 0;

/// The 7-word get_throttled request.
pub fn get_throttled_request() -> [u32; 7] {
    // Value 0: clear no sticky bits, so "occurred since boot" stays intact
    // for vcgencmd and everyone else.
    [28, REQUEST, TAG_GET_THROTTLED, 4, REQUEST, 0, END_TAG]
}

/// The 8-word GET_CLOCK_MEASURED request for `clock`.
pub fn clock_measured_request(clock: u32) -> [u32; 8] {
    [
        32,
        REQUEST,
        TAG_GET_CLOCK_MEASURED,
        8,
        REQUEST,
        clock,
        0,
        END_TAG,
    ]
}

/// Checks the message status and the single tag's response code; returns
/// the tag's value words.
fn reply_value(buf: &[u32], tag: u32, value_bytes: u32) -> io::Result<&[u32]> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    if buf.len() < 6 {
        return Err(bad("mailbox reply too short".into()));
    }
    if buf[1] != STATUS_SUCCESS {
        return Err(bad(format!(
            "firmware rejected the request (status {:#010x})",
            buf[1]
        )));
    }
    if buf[2] != tag {
        return Err(bad(format!(
            "reply carries tag {:#010x}, not {tag:#010x}",
            buf[2]
        )));
    }
    let code = buf[4];
    if code & TAG_RESPONSE == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("firmware did not answer tag {tag:#010x}"),
        ));
    }
    if code & !TAG_RESPONSE < value_bytes {
        return Err(bad(format!(
            "tag {tag:#010x} answered {} bytes, expected {value_bytes}",
            code & !TAG_RESPONSE
        )));
    }
    let words = (value_bytes / 4) as usize;
    buf.get(5..5 + words)
        .ok_or_else(|| bad("mailbox reply too short".into()))
}

/// The throttled word from a get_throttled reply.
pub fn decode_get_throttled(reply: &[u32; 7]) -> io::Result<u32> {
    Ok(reply_value(reply, TAG_GET_THROTTLED, 4)?[0])
}

/// The rate in Hz from a GET_CLOCK_MEASURED reply for `clock`.
pub fn decode_clock_measured(reply: &[u32; 8], clock: u32) -> io::Result<u32> {
    let value = reply_value(reply, TAG_GET_CLOCK_MEASURED, 8)?;
    if value[0] != clock {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply is for clock {}, not {clock}", value[0]),
        ));
    }
    Ok(value[1])
}

/// Where property messages go.
#[derive(Debug)]
pub enum Mailbox {
    /// /dev/vcio on the real system.
    Device(File),
    /// The fixture-tree emulation described in the module docs.
    Fixture { throttled: PathBuf, clock: PathBuf },
}

/// Why the mailbox could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No mailbox here (not a Raspberry Pi, or no vcio driver): normal.
    Absent,
    /// /dev/vcio exists but the agent may not open it.
    PermissionDenied(PathBuf),
    Other(PathBuf, io::Error),
}

impl Mailbox {
    /// Opens /dev/vcio on the real system, or the emulation in a fixture
    /// root that has `dev/vcio.get_throttled`.
    pub fn open(root: &SysRoot) -> Result<Mailbox, OpenError> {
        let dev = root.join("/dev/vcio");
        if !root.is_host() {
            let throttled = root.join("/dev/vcio.get_throttled");
            if !throttled.is_file() {
                return Err(OpenError::Absent);
            }
            return Ok(Mailbox::Fixture {
                throttled,
                clock: root.join("/dev/vcio.clock_measured_arm"),
            });
        }
        match File::open(&dev) {
            Ok(f) => Ok(Mailbox::Device(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenError::Absent),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(OpenError::PermissionDenied(dev))
            }
            Err(e) => Err(OpenError::Other(dev, e)),
        }
    }

    /// The path problems are reported under.
    pub fn path(&self) -> PathBuf {
        match self {
            Mailbox::Device(_) => PathBuf::from("/dev/vcio"),
            Mailbox::Fixture { throttled, .. } => throttled.clone(),
        }
    }

    /// The firmware's get_throttled word.
    pub fn get_throttled(&mut self) -> io::Result<u32> {
        let mut buf = get_throttled_request();
        self.property(&mut buf)?;
        decode_get_throttled(&buf)
    }

    /// The ARM clock as the firmware measures it, Hz.
    pub fn arm_clock_measured(&mut self) -> io::Result<u32> {
        let mut buf = clock_measured_request(CLOCK_ARM);
        self.property(&mut buf)?;
        decode_clock_measured(&buf, CLOCK_ARM)
    }

    fn property(&mut self, buf: &mut [u32]) -> io::Result<()> {
        match self {
            Mailbox::Device(file) => syscall::mailbox_property(file, buf),
            Mailbox::Fixture { throttled, clock } => emulate_firmware(throttled, clock, buf),
        }
    }
}

/// Answers a single-tag request the way the firmware does, from the fixture
/// files. A missing file leaves the tag unanswered, as firmware that does
/// not know a tag does.
fn emulate_firmware(throttled: &PathBuf, clock: &PathBuf, buf: &mut [u32]) -> io::Result<()> {
    let read_word = |path: &PathBuf| -> io::Result<Option<u32>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = text.trim();
        let parsed = match t.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => t.parse(),
        };
        parsed
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {t:?}")))
    };
    if buf.len() < 7 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    buf[1] = STATUS_SUCCESS;
    match buf[2] {
        TAG_GET_THROTTLED => {
            if let Some(word) = read_word(throttled)? {
                buf[4] = TAG_RESPONSE | 4;
                buf[5] = word;
            }
        }
        TAG_GET_CLOCK_MEASURED if buf.len() >= 8 => {
            if let Some(hz) = read_word(clock)? {
                buf[4] = TAG_RESPONSE | 8;
                buf[6] = hz;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_property_interface() {
        let r = get_throttled_request();
        assert_eq!(r[0] as usize, std::mem::size_of_val(&r));
        assert_eq!(r, [28, 0, 0x0003_0046, 4, 0, 0, 0]);
        let c = clock_measured_request(CLOCK_ARM);
        assert_eq!(c[0] as usize, std::mem::size_of_val(&c));
        assert_eq!(c, [32, 0, 0x0003_0047, 8, 0, 3, 0, 0]);
    }

    #[test]
    fn decodes_replies_and_rejects_failures() {
        let ok = [28, 0x8000_0000, 0x0003_0046, 4, 0x8000_0004, 0x50005, 0];
        assert_eq!(decode_get_throttled(&ok).unwrap(), 0x50005);
        let parse_error = [28, 0x8000_0001, 0x0003_0046, 4, 0, 0, 0];
        assert!(decode_get_throttled(&parse_error).is_err());
        let unanswered = [28, 0x8000_0000, 0x0003_0046, 4, 0, 0, 0];
        assert_eq!(
            decode_get_throttled(&unanswered).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        let clock = [
            32,
            0x8000_0000,
            0x0003_0047,
            8,
            0x8000_0008,
            3,
            1_500_000_000,
            0,
        ];
        assert_eq!(decode_clock_measured(&clock, 3).unwrap(), 1_500_000_000);
        let other_clock = [32, 0x8000_0000, 0x0003_0047, 8, 0x8000_0008, 4, 1, 0];
        assert!(decode_clock_measured(&other_clock, 3).is_err());
    }
}
