//! Raspberry Pi throttling: the firmware's get_throttled word through the
//! mailbox, else the `rpi_volt` hwmon under-voltage alarm, else nothing.
//! Never the deprecated (and removed) soc:firmware/get_throttled sysfs file,
//! never vcgencmd.

use std::io;
use std::path::PathBuf;

use nodewarden_proto::throttle::{OCCURRED_SHIFT, UNDER_VOLTAGE};
use nodewarden_proto::v1::{Throttling, ThrottlingSource};

use super::log_once::LogOnce;
use super::reader::Reader;
use super::vcio::{Mailbox, OpenError};
use crate::sysroot::SysRoot;

/// What a user must do when /dev/vcio is not theirs to open.
pub const VIDEO_GROUP_FIX: &str = "add the nodewarden user to group video \
     (usermod -aG video nodewarden) and restart the agent; until then only \
     the rpi_volt under-voltage alarm is reported";

/// Reads throttling each sample; remembers what it could open.
#[derive(Debug, Default)]
pub struct ThrottleReader {
    mailbox: Option<Mailbox>,
    rpi_volt_alarm: Option<PathBuf>,
    /// The rpi_volt fallback has no "since boot" half; remember it here once
    /// seen (since the agent started, which is the best that can be said).
    under_voltage_seen: bool,
    /// GET_CLOCK_MEASURED went unanswered once: do not ask again.
    clock_unsupported: bool,
}

impl ThrottleReader {
    /// (Re)discovers the sources. An open mailbox is kept.
    pub fn discover(&mut self, root: &SysRoot, log: &LogOnce, rpi_volt_alarm: Option<PathBuf>) {
        self.rpi_volt_alarm = rpi_volt_alarm;
        if self.mailbox.is_some() {
            return;
        }
        match Mailbox::open(root) {
            Ok(m) => self.mailbox = Some(m),
            Err(OpenError::Absent) => {}
            Err(OpenError::PermissionDenied(path)) => log.permission(&path, VIDEO_GROUP_FIX),
            Err(OpenError::Other(path, e)) => log.read_failed(&path, &e),
        }
    }

    /// True when the firmware word is readable.
    pub fn has_mailbox(&self) -> bool {
        self.mailbox.is_some()
    }

    /// The throttling reading, and the measured ARM clock in Hz (0 if not
    /// available).
    pub fn read(&mut self, reader: &mut Reader, log: &LogOnce) -> (Option<Throttling>, u64) {
        let alarm = self.read_alarm(reader, log);
        let mut measured = 0;
        if let Some(mailbox) = &mut self.mailbox {
            match mailbox.get_throttled() {
                Ok(word) => {
                    if !self.clock_unsupported {
                        match mailbox.arm_clock_measured() {
                            Ok(hz) => measured = u64::from(hz),
                            Err(e) => {
                                if e.kind() == io::ErrorKind::Unsupported {
                                    self.clock_unsupported = true;
                                }
                                log.read_failed(&mailbox.path(), &e);
                            }
                        }
                    }
                    let throttling = Throttling {
                        source: ThrottlingSource::Mailbox as i32,
                        get_throttled: word,
                        // Where the rpi_volt alarm exists it is what the
                        // field documents; otherwise the word's own bit.
                        under_voltage_alarm: alarm.unwrap_or(word & UNDER_VOLTAGE != 0),
                    };
                    return (Some(throttling), measured);
                }
                Err(e) => log.read_failed(&mailbox.path(), &e),
            }
        }
        let throttling = alarm.map(|now| {
            self.under_voltage_seen |= now;
            let mut word = if now { UNDER_VOLTAGE } else { 0 };
            if self.under_voltage_seen {
                word |= UNDER_VOLTAGE << OCCURRED_SHIFT;
            }
            Throttling {
                source: ThrottlingSource::HwmonRpiVolt as i32,
                get_throttled: word,
                under_voltage_alarm: now,
            }
        });
        (throttling, measured)
    }

    fn read_alarm(&mut self, reader: &mut Reader, log: &LogOnce) -> Option<bool> {
        let path = self.rpi_volt_alarm.as_ref()?;
        match reader.integer(path, log)? {
            0 => Some(false),
            1 => Some(true),
            _ => {
                log.garbage(path, "expected 0 or 1");
                None
            }
        }
    }
}
