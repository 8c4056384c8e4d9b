use std::collections::BTreeMap;

use super::driver::*;
use super::protocol::*;
use crate::ups::model::UpsError;

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn words_split_like_parseconf() {
    // Replies as documented in net-protocol.txt.
    assert_eq!(
        split_words(r#"VAR su700 ups.status "OL""#),
        Ok(words(&["VAR", "su700", "ups.status", "OL"]))
    );
    assert_eq!(
        split_words(r#"UPSDESC su700 "Development box""#),
        Ok(words(&["UPSDESC", "su700", "Development box"]))
    );
    assert_eq!(
        split_words(r#"VAR ups device.model "Smart \"1500\" \\ rack""#),
        Ok(words(&[
            "VAR",
            "ups",
            "device.model",
            r#"Smart "1500" \ rack"#
        ]))
    );
    assert_eq!(
        split_words(r#"VAR ups x """#),
        Ok(words(&["VAR", "ups", "x", ""]))
    );
    assert_eq!(
        split_words("  CMD\tsu700   load.on "),
        Ok(words(&["CMD", "su700", "load.on"]))
    );
    assert_eq!(
        split_words(r#"VAR ups x "open"#),
        Err(NutParseError::UnterminatedQuote { column: 11 })
    );
    assert_eq!(
        split_words("VAR ups x \\"),
        Err(NutParseError::TrailingBackslash)
    );
    assert_eq!(
        split_words(&"x".repeat(MAX_LINE_LEN + 1)),
        Err(NutParseError::LineTooLong)
    );
}

#[test]
fn quoting_round_trips_through_the_splitter() {
    for value in ["plain", "with space", r#"q"uo\te"#, ""] {
        let line = format!("SET VAR ups ups.id {}", quote(value));
        assert_eq!(split_words(&line).expect("split")[4], value);
    }
}

#[test]
fn reply_lines_are_classified() {
    assert_eq!(parse_reply_line("OK"), Ok(NutReply::Ok(vec![])));
    assert_eq!(
        parse_reply_line("OK TRACKING 1bd31808-cb49-4aec-9d75-d056e6f018d2\n"),
        Ok(NutReply::Ok(words(&[
            "TRACKING",
            "1bd31808-cb49-4aec-9d75-d056e6f018d2"
        ])))
    );
    assert_eq!(
        parse_reply_line("ERR ACCESS-DENIED"),
        Ok(NutReply::Err {
            code: NutErrorCode::AccessDenied,
            extra: vec![]
        })
    );
    assert_eq!(
        parse_reply_line("ERR DATA-STALE extra info"),
        Ok(NutReply::Err {
            code: NutErrorCode::DataStale,
            extra: words(&["extra", "info"])
        })
    );
    assert_eq!(
        parse_reply_line("ERR SOMETHING-NEW"),
        Ok(NutReply::Err {
            code: NutErrorCode::Other("SOMETHING-NEW".into()),
            extra: vec![]
        })
    );
    assert_eq!(parse_reply_line(""), Err(NutParseError::Empty));
    for (wire, code) in CODES {
        assert_eq!(NutErrorCode::from_wire(wire), *code);
        assert_eq!(code.wire_name(), *wire);
    }
}

#[test]
fn documented_lists_parse() {
    let vars = [
        "BEGIN LIST VAR su700",
        r#"VAR su700 ups.mfr "APC""#,
        r#"VAR su700 ups.mfr.date "10/17/96""#,
        "END LIST VAR su700",
    ];
    assert_eq!(
        parse_list(&vars, &["VAR", "su700"]),
        Ok(vec![
            words(&["ups.mfr", "APC"]),
            words(&["ups.mfr.date", "10/17/96"])
        ])
    );
    let cmds = [
        "BEGIN LIST CMD su700",
        "CMD su700 load.on",
        "CMD su700 test.panel.start",
        "END LIST CMD su700",
    ];
    assert_eq!(
        parse_list(&cmds, &["CMD", "su700"]),
        Ok(vec![words(&["load.on"]), words(&["test.panel.start"])])
    );
    let ups = [
        "BEGIN LIST UPS",
        r#"UPS su700 "Development box""#,
        "END LIST UPS",
    ];
    assert_eq!(
        parse_list(&ups, &["UPS"]),
        Ok(vec![words(&["su700", "Development box"])])
    );
    assert_eq!(
        parse_list(&["BEGIN LIST VAR a", "END LIST VAR a"], &["VAR", "a"]),
        Ok(vec![])
    );
}

#[test]
fn broken_lists_are_errors_not_guesses() {
    let q = ["VAR", "ups"];
    assert!(matches!(
        parse_list(&[], &q),
        Err(NutParseError::Truncated { .. })
    ));
    assert!(matches!(
        parse_list(&["BEGIN LIST VAR other", "END LIST VAR other"], &q),
        Err(NutParseError::Unexpected { .. })
    ));
    assert!(matches!(
        parse_list(&["BEGIN LIST VAR ups", r#"VAR ups a "1""#], &q),
        Err(NutParseError::Truncated { .. })
    ));
    assert!(matches!(
        parse_list(
            &[
                "BEGIN LIST VAR ups",
                r#"VAR other a "1""#,
                "END LIST VAR ups"
            ],
            &q
        ),
        Err(NutParseError::Unexpected { .. })
    ));
    assert!(matches!(
        parse_list(
            &["BEGIN LIST VAR ups", "ERR DATA-STALE", "END LIST VAR ups"],
            &q
        ),
        Err(NutParseError::Unexpected { .. })
    ));
    assert!(matches!(
        parse_list(&["BEGIN LIST VAR ups", r#"VAR ups a "1"#], &q),
        Err(NutParseError::UnterminatedQuote { .. })
    ));
    // The END line must name the same query, not a longer one.
    assert!(matches!(
        parse_list(&["BEGIN LIST VAR ups", "END LIST VAR ups extra"], &q),
        Err(NutParseError::Unexpected { .. })
    ));
}

#[test]
fn addresses_split_into_ups_host_and_port() {
    let ok = |a: &str, u: &str, h: &str, p: u16| {
        assert_eq!(
            parse_address(a).expect(a),
            (u.to_string(), h.to_string(), p),
            "{a}"
        )
    };
    ok("ups@host:3493", "ups", "host", 3493);
    ok("ups@127.0.0.1", "ups", "127.0.0.1", DEFAULT_PORT);
    ok("riello@[::1]:3500", "riello", "::1", 3500);
    ok("riello@[::1]", "riello", "::1", DEFAULT_PORT);
    ok("ups", "ups", "localhost", DEFAULT_PORT);
    for bad in [
        "@host",
        "ups@",
        "ups@host:",
        "ups@host:99999",
        "ups@::1",
        "ups@[::1",
        "u p@h",
    ] {
        assert!(
            matches!(parse_address(bad), Err(NutError::BadAddress(_))),
            "{bad}"
        );
    }
}

#[test]
fn variables_map_to_a_reading_and_ratings() {
    let vars: BTreeMap<String, String> = [
        ("ups.status", "OB LB"),
        ("input.voltage", "0.0"),
        ("output.voltage", "229.5"),
        ("input.frequency", "50.0"),
        ("ups.load", "23"),
        ("battery.voltage", "12.1"),
        ("battery.charge", "18"),
        ("battery.runtime", "240"),
        ("ups.temperature", "nan"),
        ("output.voltage.nominal", "230"),
        ("ups.power.nominal", "800"),
        ("output.frequency.nominal", "50.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = reading_from_vars(&vars);
    assert_eq!(r.status, vec!["OB", "LB"]);
    assert_eq!(r.input_voltage_volts, Some(0.0));
    assert_eq!(r.output_voltage_volts, Some(229.5));
    assert_eq!(r.load_percent, Some(23.0));
    assert_eq!(r.battery_charge_percent, Some(18.0));
    assert_eq!(r.battery_runtime_seconds, Some(240.0));
    assert_eq!(r.temperature_celsius, None, "unparseable values are absent");
    let n = ratings_from_vars(&vars);
    assert_eq!(n.output_voltage_volts, Some(230.0));
    assert_eq!(n.power_va, Some(800.0));
    assert_eq!(n.frequency_hertz, Some(50.0));
    assert_eq!(n.input_voltage_volts, None);
}

#[test]
fn server_errors_become_errors_a_user_can_act_on() {
    let server = |code| NutError::Server {
        addr: "127.0.0.1:3493".into(),
        request: "INSTCMD ups shutdown.return".into(),
        code,
    };
    let e = server(NutErrorCode::UsernameRequired)
        .into_ups_error("ups@127.0.0.1:3493", Some("shutdown.return"));
    assert!(matches!(
        e,
        UpsError::Refused {
            command: "shutdown.return",
            ..
        }
    ));
    assert!(e.to_string().contains("nut_user"), "{e}");
    let e = server(NutErrorCode::UnknownUps).into_ups_error("x@h:1", None);
    assert!(matches!(e, UpsError::Open { .. }));
    let e = server(NutErrorCode::DataStale).into_ups_error("x@h:1", None);
    assert!(matches!(e, UpsError::Io { .. }));
    assert!(e.to_string().contains("lost the UPS"), "{e}");
}

#[test]
fn a_closed_port_is_a_connect_error_naming_upsd() {
    // Bind then drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let err = match NutDriver::connect(&format!("ups@127.0.0.1:{port}"), None) {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    assert!(matches!(err, UpsError::Open { .. }), "{err}");
    assert!(err.to_string().contains("is upsd running"), "{err}");
}

#[test]
fn error_messages_never_show_a_password() {
    assert_eq!(shown_request("PASSWORD \"s3cret\""), "PASSWORD ***");
    assert_eq!(
        shown_request("INSTCMD ups shutdown.return \"x\""),
        "INSTCMD ups shutdown.return"
    );
}
