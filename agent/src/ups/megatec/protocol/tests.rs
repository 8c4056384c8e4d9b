//! Fixtures are replies documented in NUT's megatec subdriver and the
//! Megatec protocol description, plus the broken ones real units send.

use super::*;

// NUT drivers/nutdrv_qx_megatec.c, the Q1 example in its lookup table.
const NUT_Q1: &[u8] = b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000\r";
// NUT's testing table for the megatec subdriver.
const NUT_Q1_TESTING: &[u8] = b"(215.0 195.0 230.0 014 49.0 22.7 30.0 00000000\r";
// The Megatec protocol document's example: per-cell battery voltage, on
// battery with low battery.
const MEGATEC_DOC_Q1: &[u8] = b"(208.4 140.0 208.4 034 59.9 2.05 35.0 11001000\r";
const NUT_F: &[u8] = b"#220.0 000 024.0 50.0\r";
const NUT_I_TESTING: &[u8] = b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r";
const NUT_I_DASHES: &[u8] = b"#-------------   ------     VT12046Q  \r";

#[test]
fn parses_nuts_documented_q1_reply() {
    let q = parse_q1(NUT_Q1).expect("documented reply parses");
    assert_eq!(q.input_voltage, Some(226.0));
    assert_eq!(q.input_fault_voltage, Some(195.0));
    assert_eq!(q.output_voltage, Some(226.0));
    assert_eq!(q.load_percent, Some(14.0));
    assert_eq!(q.input_frequency, Some(49.0));
    assert_eq!(q.battery_voltage, Some(27.5));
    assert_eq!(q.temperature, Some(30.0));
    assert!(q.bits.standby_type);
    assert!(!q.bits.utility_fail && !q.bits.battery_low && !q.bits.beeper_on);
    assert_eq!(status_tokens(&q, false), vec!["OL"]);
    let t = parse_q1(NUT_Q1_TESTING).expect("testing reply parses");
    assert_eq!(t.battery_voltage, Some(22.7));
    assert_eq!(status_tokens(&t, false), vec!["OL"]);
}

#[test]
fn utility_fail_and_battery_low_give_ob_lb() {
    let q = parse_q1(MEGATEC_DOC_Q1).expect("parses");
    assert_eq!(q.battery_voltage, Some(2.05));
    assert_eq!(status_tokens(&q, false), vec!["OB", "LB"]);
}

#[test]
fn bypass_bit_means_trim_bypass_or_boost_by_voltage_ratio() {
    let with = |vi: &str, vo: &str| {
        let r = format!("({vi} 140.0 {vo} 034 50.0 13.5 35.0 00100000\r");
        status_tokens(&parse_q1(r.as_bytes()).expect("parses"), false)
    };
    assert_eq!(with("240.0", "220.0"), vec!["OL", "TRIM"]);
    assert_eq!(with("230.0", "231.0"), vec!["OL", "BYPASS"]);
    assert_eq!(with("200.0", "225.0"), vec!["OL", "BOOST"]);
    // Nonsense ratios are dropped, as NUT drops them.
    assert_eq!(with("230.0", "100.0"), vec!["OL"]);
    assert_eq!(with("100.0", "230.0"), vec!["OL"]);
}

#[test]
fn test_and_shutdown_bits_give_cal_and_fsd() {
    let q = parse_q1(b"(230.0 230.0 230.0 020 50.0 13.6 25.0 00000111\r").expect("parses");
    assert!(q.bits.beeper_on);
    assert_eq!(status_tokens(&q, false), vec!["OL", "CAL", "FSD"]);
    assert_eq!(status_tokens(&q, true), vec!["OL", "CAL"]);
}

#[test]
fn at_and_dash_filled_fields_are_unsupported_values() {
    let q = parse_q1(b"(230.0 @@@.@ 230.0 020 50.0 13.6 --.- 00001001\r").expect("parses");
    assert_eq!(q.input_fault_voltage, None);
    assert_eq!(q.temperature, None);
    assert_eq!(q.load_percent, Some(20.0));
}

#[test]
fn noise_before_the_reply_is_skipped() {
    let mut r = b"\x00\xff((garbage(".to_vec();
    r.extend_from_slice(NUT_Q1);
    assert_eq!(parse_q1(&r), parse_q1(NUT_Q1));
    let mut f = b"\xfe#x".to_vec();
    f.extend_from_slice(NUT_F);
    assert_eq!(parse_f(&f), parse_f(NUT_F));
}

#[test]
fn broken_q1_replies_are_typed_errors() {
    assert_eq!(parse_q1(b""), Err(ParseError::Empty));
    assert_eq!(parse_q1(b"\r"), Err(ParseError::Empty));
    assert!(matches!(
        parse_q1(b"(226.0 195.0 226.0 014\r"),
        Err(ParseError::FieldCount {
            expected: 8,
            got: 4,
            ..
        })
    ));
    assert!(matches!(
        parse_q1(b"#226.0 195.0 226.0 014 49.0 27.5 30.0 00001000\r"),
        Err(ParseError::WrongStart { expected: '(', .. })
    ));
    assert!(matches!(
        parse_q1(b"(226.0 195.0 2x6.0 014 49.0 27.5 30.0 00001000\r"),
        Err(ParseError::NotANumber {
            field: "output voltage",
            ..
        })
    ));
    assert!(matches!(
        parse_q1(b"(226.0 195.0 226.0 014 49.0 27.5 30.0 0000100\r"),
        Err(ParseError::StatusBits(_))
    ));
    assert!(matches!(
        parse_q1(b"(226.0 195.0 226.0 014 49.0 27.5 30.0 0000102X\r"),
        Err(ParseError::StatusBits(_))
    ));
    // Rust's float parser would take these; a UPS never sends them.
    assert!(parse_q1(b"(inf 195.0 226.0 014 49.0 27.5 30.0 00001000\r").is_err());
    assert!(parse_q1(b"(1e3 195.0 226.0 014 49.0 27.5 30.0 00001000\r").is_err());
    let long = vec![b'('; MAX_LINE + 1];
    assert_eq!(
        parse_q1(&long),
        Err(ParseError::TooLong { len: MAX_LINE + 1 })
    );
}

#[test]
fn echo_and_nak_are_recognised_on_queries() {
    assert_eq!(parse_q1(b"Q1\r"), Err(ParseError::Echo));
    assert_eq!(parse_f(b"F\r"), Err(ParseError::Echo));
    assert_eq!(parse_i(b"I\r"), Err(ParseError::Echo));
    assert_eq!(parse_q1(b"(NAK\r"), Err(ParseError::Nak));
    assert_eq!(parse_f(b"NAK\r"), Err(ParseError::Nak));
}

#[test]
fn parses_f_reply() {
    let r = parse_f(NUT_F).expect("parses");
    assert_eq!(
        r,
        Ratings {
            voltage: Some(220.0),
            current: Some(0.0),
            battery_voltage: Some(24.0),
            frequency: Some(50.0)
        }
    );
    assert!(matches!(
        parse_f(b"#220.0 000\r"),
        Err(ParseError::FieldCount { .. })
    ));
}

#[test]
fn parses_i_reply_by_columns() {
    let i = parse_i(NUT_I_TESTING).expect("parses");
    assert_eq!(i.manufacturer, "NOT_A_LIVE_UPS");
    assert_eq!(i.model, "TESTING");
    assert_eq!(i.firmware, "TESTING");
    let d = parse_i(NUT_I_DASHES).expect("parses");
    assert_eq!((d.manufacturer.as_str(), d.model.as_str()), ("", ""));
    assert_eq!(d.firmware, "VT12046Q");
    // Spaces inside a column survive; noise before the reply does not.
    let noisy = parse_i(b"zz#Riello SpA      iDialog 8  V2.1      \r").expect("parses");
    assert_eq!(noisy.manufacturer, "Riello SpA");
    assert_eq!(noisy.model, "iDialog 8");
    assert_eq!(noisy.firmware, "V2.1");
    assert!(matches!(
        parse_i(b"no hash\r"),
        Err(ParseError::WrongStart { .. })
    ));
}

#[test]
fn command_replies_follow_nut() {
    assert_eq!(command_outcome(b"T\r", None), CommandOutcome::Accepted);
    assert_eq!(
        command_outcome(b"T\r", Some(b"ACK\r")),
        CommandOutcome::Accepted
    );
    assert_eq!(
        command_outcome(b"T\r", Some(b"(ACK\r")),
        CommandOutcome::Accepted
    );
    assert_eq!(
        command_outcome(b"T\r", Some(b"(NAK\r")),
        CommandOutcome::Refused
    );
    assert_eq!(
        command_outcome(b"TL\r", Some(b"TL\r")),
        CommandOutcome::Unsupported
    );
    assert!(matches!(
        command_outcome(b"TL\r", Some(b"(230.0\r")),
        CommandOutcome::Unexpected(_)
    ));
}

#[test]
fn shutdown_encoding_never_cuts_sooner_or_restores_sooner_than_asked() {
    let sr = |off, on| {
        String::from_utf8(encode_shutdown_return(off, on).expect("in range")).expect("ascii")
    };
    assert_eq!(sr(30, 60), "S.5R0001\r");
    // NUT's nutdrv_qx truncates these (35 s to .5, 90 s to 01, 119 s to one
    // minute): the unit would cut before the nodes have halted.
    assert_eq!(sr(35, 180), "S.6R0003\r");
    assert_eq!(sr(45, 180), "S.8R0003\r");
    assert_eq!(sr(100, 180), "S02R0003\r");
    assert_eq!(sr(12, 60), "S.2R0001\r");
    assert_eq!(sr(59, 60), "S01R0001\r");
    assert_eq!(sr(60, 120), "S01R0002\r");
    assert_eq!(sr(90, 119), "S02R0002\r");
    assert_eq!(sr(600, 599_940), "S10R9999\r");
    // Restore 0: plain S<n>, on as soon as mains returns.
    assert_eq!(sr(120, 0), "S02\r");
    assert_eq!(sr(120, 30), "S02R0001\r");
    assert_eq!(
        encode_shutdown_stay_off(300).expect("in range"),
        b"S05R0000\r".to_vec()
    );
    assert_eq!(
        encode_shutdown_return(11, 60),
        Err(EncodeError::OffDelay(11))
    );
    assert_eq!(
        encode_shutdown_return(601, 60),
        Err(EncodeError::OffDelay(601))
    );
    assert_eq!(
        encode_shutdown_return(60, 600_000),
        Err(EncodeError::RestoreDelay(600_000))
    );
}

#[test]
fn simple_commands_encode() {
    use crate::ups::model::UpsCommandKind as K;
    let e = |k| encode_command(k).expect("encodes");
    assert_eq!(e(K::BatteryTestQuick), b"T\r");
    assert_eq!(e(K::BatteryTestDeep), b"TL\r");
    assert_eq!(e(K::CancelTest), b"CT\r");
    assert_eq!(e(K::CancelShutdown), b"C\r");
    assert_eq!(e(K::BeeperToggle), b"Q\r");
    assert_eq!(encode_test_minutes(4).expect("ok"), b"T04\r");
    assert_eq!(encode_test_minutes(99).expect("ok"), b"T99\r");
    assert_eq!(encode_test_minutes(0), Err(EncodeError::TestMinutes(0)));
    assert_eq!(encode_test_minutes(100), Err(EncodeError::TestMinutes(100)));
}

#[test]
fn battery_packs_are_guessed_like_nut() {
    assert_eq!(guess_battery_packs(13.5, 12.0), Some(1.0));
    assert_eq!(guess_battery_packs(27.5, 24.0), Some(1.0));
    // Per cell: 2.05 V × 12 cells for a 24 V pack.
    assert_eq!(guess_battery_packs(2.05, 24.0), Some(12.0));
    assert_eq!(guess_battery_packs(2.27, 12.0), Some(6.0));
    assert_eq!(guess_battery_packs(12.0, 48.0), Some(4.0));
    // Nothing fits: even half of 100 V is far above a 12 V pack.
    assert_eq!(guess_battery_packs(100.0, 12.0), None);
    assert_eq!(guess_battery_packs(0.0, 12.0), None);
}

#[test]
fn charge_is_guessed_from_voltage_like_nut() {
    let m = BatteryModel::guess(12.0, 13.0, None, None, None);
    assert!((m.voltage_low - 10.4).abs() < 1e-9 && (m.voltage_high - 13.0).abs() < 1e-9);
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
    assert!(near(m.charge_percent(13.0), 100.0));
    assert_eq!(m.charge_percent(10.4), Some(0.0));
    assert!((m.charge_percent(11.7).expect("charge") - 50.0).abs() < 1e-9);
    assert_eq!(m.charge_percent(14.2), Some(100.0));
    assert_eq!(m.charge_percent(9.0), Some(0.0));
    // Per-cell unit: 2.05 × 12 = 24.6 V of a 24 V pack (20.8-26.0 V).
    let cells = BatteryModel::guess(24.0, 2.05, None, None, None);
    assert_eq!(cells.packs, 12.0);
    assert!((cells.charge_percent(2.05).expect("charge") - 100.0 * 3.8 / 5.2).abs() < 1e-9);
    // Overrides win.
    let o = BatteryModel::guess(12.0, 13.0, Some(11.0), Some(13.6), Some(1.0));
    assert!(near(o.charge_percent(12.3), 50.0));
}

#[test]
fn runtime_follows_the_runtimecal_curve() {
    let cal = RuntimeCal::default();
    let full = cal.estimate(100.0, 100.0).expect("estimate");
    let half = cal.estimate(100.0, 50.0).expect("estimate");
    assert!((full - 240.0).abs() < 1e-6, "{full}");
    assert!((half - 720.0).abs() < 1e-6, "{half}");
    assert!((cal.estimate(50.0, 100.0).expect("estimate") - 120.0).abs() < 1e-6);
    // Idle load is floored at 10 %.
    assert_eq!(cal.estimate(100.0, 0.0), cal.estimate(100.0, 5.0));
    let broken = RuntimeCal {
        runtime_low_s: 100.0,
        ..RuntimeCal::default()
    };
    assert_eq!(broken.estimate(100.0, 50.0), None);
}
