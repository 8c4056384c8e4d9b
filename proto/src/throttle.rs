//! Decoding the Raspberry Pi firmware's `get_throttled` word.

/// Under-voltage detected now.
pub const UNDER_VOLTAGE: u32 = 1 << 0;
/// ARM frequency capped now.
pub const FREQUENCY_CAPPED: u32 = 1 << 1;
/// Currently throttled.
pub const THROTTLED: u32 = 1 << 2;
/// Soft temperature limit active now.
pub const SOFT_TEMP_LIMIT: u32 = 1 << 3;
/// The "has occurred since boot" copies sit 16 bits higher.
pub const OCCURRED_SHIFT: u32 = 16;

/// One flag of the word, with the name users see in the CLI and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Bit in the "now" half.
    pub bit: u32,
    /// snake_case name, used as a metric label value.
    pub name: &'static str,
    /// Short name for tables.
    pub short: &'static str,
}

/// The four flags, in bit order.
pub const FLAGS: [Flag; 4] = [
    Flag {
        bit: UNDER_VOLTAGE,
        name: "under_voltage",
        short: "UV",
    },
    Flag {
        bit: FREQUENCY_CAPPED,
        name: "frequency_capped",
        short: "CAP",
    },
    Flag {
        bit: THROTTLED,
        name: "throttled",
        short: "THR",
    },
    Flag {
        bit: SOFT_TEMP_LIMIT,
        name: "soft_temp_limit",
        short: "SOFT",
    },
];

/// Flags active now.
pub fn active_now(word: u32) -> impl Iterator<Item = Flag> {
    FLAGS.into_iter().filter(move |f| word & f.bit != 0)
}

/// Flags that occurred since boot.
pub fn occurred_since_boot(word: u32) -> impl Iterator<Item = Flag> {
    FLAGS
        .into_iter()
        .filter(move |f| word & (f.bit << OCCURRED_SHIFT) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_documented_words() {
        // 0x50005: under-voltage now and throttled now, both also since boot
        // (the classic weak-PSU reading from vcgencmd get_throttled).
        let now: Vec<_> = active_now(0x50005).map(|f| f.name).collect();
        assert_eq!(now, ["under_voltage", "throttled"]);
        let past: Vec<_> = occurred_since_boot(0x50005).map(|f| f.name).collect();
        assert_eq!(past, ["under_voltage", "throttled"]);
        // 0x50000: it happened, it is over.
        assert_eq!(active_now(0x50000).count(), 0);
        assert_eq!(
            occurred_since_boot(0x80000)
                .map(|f| f.short)
                .collect::<Vec<_>>(),
            ["SOFT"]
        );
    }
}
