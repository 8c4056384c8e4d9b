//! The delays a UPS really applies to a shutdown command, which are not
//! always the ones asked for: Megatec units count the off delay in tenths of
//! a minute or whole minutes and the restore delay in whole minutes; a NUT
//! driver may refuse `SET VAR` and keep its own (known only once tried). The
//! agent encodes with these rules and the collector previews with them, so
//! both sides agree on what the UPS will do.

use serde::{Deserialize, Serialize};

/// Off and restore delays as the UPS will apply them, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delays {
    /// Output cut this long after the command.
    pub off_s: u32,
    /// Output back this long after mains returns (0: at once).
    pub restore_s: u32,
}

/// The delays a shutdown command left the UPS with, as the driver knows
/// them: what was encoded (Megatec rounds up to what the unit can count),
/// or what the UPS reads back (a NUT driver may keep its own). None: not a
/// shutdown, or the driver cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDelays {
    /// The output is cut this long after the command, seconds.
    pub off_delay_s: Option<u32>,
    /// The output comes back this long after mains returns, seconds.
    pub restore_delay_s: Option<u32>,
}

impl AppliedDelays {
    /// For a command that sets no delay.
    pub const NONE: AppliedDelays = AppliedDelays {
        off_delay_s: None,
        restore_delay_s: None,
    };

    /// " (off in 120 s, back on 180 s after mains returns)", or "" when unknown.
    pub fn describe(&self) -> String {
        match (self.off_delay_s, self.restore_delay_s) {
            (Some(off), Some(0)) => format!(" (off in {off} s, back on as soon as mains returns)"),
            (Some(off), Some(on)) => {
                format!(" (off in {off} s, back on {on} s after mains returns)")
            }
            (Some(off), None) => format!(" (off in {off} s)"),
            (None, _) => String::new(),
        }
    }
}

/// The `n` of a Megatec `S<n>`: tenths of a minute under a minute (`.2` to
/// `.9`), whole minutes from 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MegatecOff {
    /// `.2`..`.9`: 12 to 54 s in 6 s steps.
    Tenths(u32),
    /// `01`..`10`.
    Minutes(u32),
}

impl MegatecOff {
    /// The delay the unit applies, seconds.
    pub fn seconds(self) -> u32 {
        match self {
            MegatecOff::Tenths(t) => t * 6,
            MegatecOff::Minutes(m) => m * 60,
        }
    }
}

/// The shortest off delay a Megatec unit takes, seconds.
pub const MEGATEC_OFF_MIN_S: u32 = 12;
/// The longest off delay a Megatec unit takes, seconds.
pub const MEGATEC_OFF_MAX_S: u32 = 600;
/// The longest restore delay a Megatec unit takes, minutes.
pub const MEGATEC_RESTORE_MAX_MIN: u32 = 9999;
/// NUT's nutdrv_qx documentation warns that some firmware stays off after a
/// restore delay under 3 minutes.
pub const MEGATEC_RESTORE_SAFE_S: u32 = 180;

/// The smallest settable Megatec off delay that is not shorter than `off_s`
/// (NUT truncates instead, and then cuts before the nodes have halted: 100 s
/// would become 60 s). None outside 12-600 s.
pub fn megatec_off(off_s: u32) -> Option<MegatecOff> {
    match off_s {
        MEGATEC_OFF_MIN_S..=54 => Some(MegatecOff::Tenths(off_s.div_ceil(6))),
        55..=MEGATEC_OFF_MAX_S => Some(MegatecOff::Minutes(off_s.div_ceil(60))),
        _ => None,
    }
}

/// The Megatec restore delay in whole minutes, rounded up (a later restore
/// only costs a later boot). None above 9999 minutes.
pub fn megatec_restore_minutes(restore_s: u32) -> Option<u32> {
    let m = restore_s.div_ceil(60);
    (m <= MEGATEC_RESTORE_MAX_MIN).then_some(m)
}

/// What a UPS read by `driver` ("megatec", "gpser", "nut") will apply when
/// asked for `off_s`/`restore_s`: None when it cannot take them at all, or
/// when only trying tells (a NUT driver may keep its own delays).
pub fn effective(driver: &str, off_s: u32, restore_s: u32) -> Option<Delays> {
    match driver {
        "megatec" => Some(Delays {
            off_s: megatec_off(off_s)?.seconds(),
            restore_s: megatec_restore_minutes(restore_s)? * 60,
        }),
        // GPSER carries seconds in 16 bits, as asked.
        "gpser" if off_s <= u32::from(u16::MAX) && restore_s <= u32::from(u16::MAX) => {
            Some(Delays { off_s, restore_s })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megatec_off_delays_round_up_to_what_the_unit_can_count() {
        let s = |off| megatec_off(off).map(MegatecOff::seconds);
        assert_eq!(s(12), Some(12));
        assert_eq!(s(35), Some(36));
        assert_eq!(s(45), Some(48));
        assert_eq!(s(54), Some(54));
        assert_eq!(s(55), Some(60));
        assert_eq!(s(90), Some(120));
        assert_eq!(s(100), Some(120));
        assert_eq!(s(600), Some(600));
        assert_eq!(s(11), None);
        assert_eq!(s(601), None);
        for off in MEGATEC_OFF_MIN_S..=MEGATEC_OFF_MAX_S {
            assert!(s(off).is_some_and(|e| e >= off), "{off} s was shortened");
        }
    }

    #[test]
    fn megatec_restore_counts_whole_minutes_never_less() {
        assert_eq!(megatec_restore_minutes(0), Some(0));
        assert_eq!(megatec_restore_minutes(1), Some(1));
        assert_eq!(megatec_restore_minutes(119), Some(2));
        assert_eq!(megatec_restore_minutes(180), Some(3));
        assert_eq!(megatec_restore_minutes(599_941), None);
    }

    #[test]
    fn effective_delays_per_driver() {
        assert_eq!(
            effective("megatec", 100, 150),
            Some(Delays {
                off_s: 120,
                restore_s: 180
            })
        );
        assert_eq!(
            effective("gpser", 100, 150),
            Some(Delays {
                off_s: 100,
                restore_s: 150
            })
        );
        assert_eq!(effective("gpser", 70_000, 0), None);
        assert_eq!(effective("nut", 100, 150), None);
        assert_eq!(effective("megatec", 5, 150), None);
    }
}
