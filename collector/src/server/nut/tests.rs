//! The session against a fixed view: upsd's answers and error codes, in
//! upsd's order of checks.

use std::collections::BTreeMap;

use super::config::{NutUser, UpsmonRole};
use super::protocol::split_words;
use super::session::{Effect, Policy, Served, Session, Step, View};

struct Fixed(Vec<Served>);

impl View for Fixed {
    fn ups(&self, name: &str) -> Option<Served> {
        let name = if name.eq_ignore_ascii_case("ups") {
            "riello"
        } else {
            name
        };
        self.0
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
            .cloned()
    }
    fn all(&self) -> Vec<Served> {
        self.0.clone()
    }
    fn clients(&self, _: &str) -> Vec<String> {
        vec!["192.0.2.7".into()]
    }
    fn tracking(&self, _: &str) -> String {
        "PENDING".into()
    }
}

fn served(name: &str, fresh: bool) -> Served {
    Served {
        name: name.into(),
        node: "pi1".into(),
        agent_ups: name.into(),
        desc: "iDialog read by pi1".into(),
        fresh,
        vars: BTreeMap::from([
            ("ups.status".to_string(), "OL".to_string()),
            ("battery.charge".to_string(), "100".to_string()),
            ("device.model".to_string(), "iDialog \"1\"".to_string()),
        ]),
        commands: vec!["test.battery.start.quick".into(), "shutdown.return".into()],
        fsd: false,
        numlogins: 1,
    }
}

fn users() -> Vec<NutUser> {
    vec![
        NutUser {
            name: "monuser".into(),
            password: "secret".into(),
            upsmon: Some(UpsmonRole::Secondary),
            instcmds: vec![],
            actions: vec![],
        },
        NutUser {
            name: "admin".into(),
            password: "hunter2".into(),
            upsmon: Some(UpsmonRole::Primary),
            instcmds: vec!["test.battery.start.quick".into()],
            actions: vec!["SET".into()],
        },
    ]
}

struct Client {
    session: Session,
    view: Fixed,
    users: Vec<NutUser>,
    blocked: bool,
}

impl Client {
    fn new() -> Self {
        Client {
            session: Session::default(),
            view: Fixed(vec![served("eaton", false), served("riello", true)]),
            users: users(),
            blocked: false,
        }
    }
    fn step(&mut self, line: &str) -> Step {
        let policy = Policy {
            users: &self.users,
            starttls: true,
            auth_blocked: self.blocked,
        };
        self.session
            .handle(&split_words(line).unwrap(), &self.view, &policy)
    }
    fn say(&mut self, line: &str) -> String {
        self.step(line).lines.join("\n")
    }
}

#[test]
fn reads_need_no_login_and_answer_like_upsd() {
    let mut c = Client::new();
    assert_eq!(c.say("NETVER"), "1.3");
    assert!(c.say("VER").starts_with("Network UPS Tools upsd"));
    assert_eq!(
        c.say("GET VAR riello ups.status"),
        "VAR riello ups.status \"OL\""
    );
    assert_eq!(
        c.say("get var RIELLO battery.charge"),
        "VAR RIELLO battery.charge \"100\""
    );
    assert_eq!(
        c.say("GET VAR riello device.model"),
        r#"VAR riello device.model "iDialog \"1\"""#
    );
    assert_eq!(
        c.say("GET TYPE riello device.model"),
        "TYPE riello device.model NUMBER"
    );
    assert_eq!(
        c.say("GET VAR riello input.current"),
        "ERR VAR-NOT-SUPPORTED"
    );
    assert_eq!(c.say("GET VAR nosuch ups.status"), "ERR UNKNOWN-UPS");
    assert_eq!(c.say("GET VAR eaton ups.status"), "ERR DATA-STALE");
    assert_eq!(c.say("GET NUMLOGINS riello"), "NUMLOGINS riello 1");
    assert_eq!(
        c.say("GET UPSDESC riello"),
        "UPSDESC riello \"iDialog read by pi1\""
    );
    assert_eq!(c.say("GET VAR ups ups.status"), "VAR ups ups.status \"OL\"");
    assert_eq!(c.say("GET"), "ERR INVALID-ARGUMENT");
    assert_eq!(c.say("FROB"), "ERR UNKNOWN-COMMAND");
}

#[test]
fn lists_are_begin_end_blocks() {
    let mut c = Client::new();
    assert_eq!(
        c.say("LIST UPS"),
        "BEGIN LIST UPS\nUPS eaton \"iDialog read by pi1\"\nUPS riello \"iDialog read by pi1\"\nEND LIST UPS"
    );
    let vars = c.say("LIST VAR riello");
    assert!(
        vars.starts_with("BEGIN LIST VAR riello\nVAR riello battery.charge \"100\""),
        "{vars}"
    );
    assert!(vars.ends_with("END LIST VAR riello"));
    assert_eq!(
        c.say("LIST RW riello"),
        "BEGIN LIST RW riello\nEND LIST RW riello"
    );
    assert_eq!(
        c.say("LIST CMD riello"),
        "BEGIN LIST CMD riello\nCMD riello test.battery.start.quick\nCMD riello shutdown.return\nEND LIST CMD riello"
    );
    assert_eq!(
        c.say("LIST CLIENT riello"),
        "BEGIN LIST CLIENT riello\nCLIENT riello 192.0.2.7\nEND LIST CLIENT riello"
    );
    assert_eq!(
        c.say("LIST ENUM riello ups.status"),
        "BEGIN LIST ENUM riello ups.status\nEND LIST ENUM riello ups.status"
    );
    assert_eq!(
        c.say("LIST RANGE riello nosuch.var"),
        "ERR VAR-NOT-SUPPORTED"
    );
    assert_eq!(c.say("LIST VAR eaton"), "ERR DATA-STALE");
    assert_eq!(c.say("LIST VAR nosuch"), "ERR UNKNOWN-UPS");
    assert_eq!(c.say("LIST BOGUS riello"), "ERR INVALID-ARGUMENT");
}

#[test]
fn login_follows_upsds_order_of_checks() {
    let mut c = Client::new();
    assert_eq!(c.say("LOGIN riello"), "ERR USERNAME-REQUIRED");
    assert_eq!(
        c.say("INSTCMD riello test.battery.start.quick"),
        "ERR USERNAME-REQUIRED"
    );
    assert_eq!(c.say("USERNAME"), "ERR INVALID-ARGUMENT");
    assert_eq!(c.say("USERNAME monuser"), "OK");
    assert_eq!(c.say("USERNAME other"), "ERR ALREADY-SET-USERNAME");
    assert_eq!(c.say("LOGIN riello"), "ERR PASSWORD-REQUIRED");
    assert_eq!(c.say("PASSWORD secret"), "OK");
    assert_eq!(c.say("PASSWORD again"), "ERR ALREADY-SET-PASSWORD");
    assert_eq!(c.say("LOGIN nosuch"), "ERR UNKNOWN-UPS");
    let step = c.step("LOGIN ups");
    assert_eq!(step.lines, ["OK"]);
    assert_eq!(step.effect, Some(Effect::Login("riello".into())));
    assert_eq!(c.say("LOGIN riello"), "ERR ALREADY-LOGGED-IN");
    assert_eq!(c.say("LOGIN riello extra"), "ERR INVALID-ARGUMENT");
    assert_eq!(c.say("LOGOUT now"), "ERR INVALID-ARGUMENT");
    assert_eq!(
        c.say("PRIMARY riello"),
        "ERR ACCESS-DENIED",
        "a secondary is no primary"
    );
    assert_eq!(c.say("FSD riello"), "ERR ACCESS-DENIED");
    assert_eq!(
        c.say("INSTCMD riello test.battery.start.quick"),
        "ERR ACCESS-DENIED",
        "monuser may run no command"
    );
    let bye = c.step("LOGOUT");
    assert_eq!(
        (bye.lines, bye.effect),
        (vec!["OK Goodbye".to_string()], Some(Effect::Close))
    );
}

#[test]
fn a_primary_may_fsd_and_run_its_commands() {
    let mut c = Client::new();
    c.say("USERNAME admin");
    c.say("PASSWORD hunter2");
    assert_eq!(c.say("MASTER riello"), "OK MASTER-GRANTED");
    assert_eq!(c.say("PRIMARY riello"), "OK PRIMARY-GRANTED");
    assert_eq!(
        c.step("FSD riello").effect,
        Some(Effect::Fsd("riello".into()))
    );
    assert_eq!(
        c.say("INSTCMD riello beeper.toggle"),
        "ERR CMD-NOT-SUPPORTED"
    );
    assert_eq!(c.say("INSTCMD riello shutdown.return"), "ERR ACCESS-DENIED");
    assert_eq!(
        c.say("INSTCMD eaton test.battery.start.quick"),
        "ERR DATA-STALE"
    );
    match c.step("INSTCMD riello test.battery.start.quick").effect {
        Some(Effect::Instcmd { ups, cmd, tracking }) => {
            assert_eq!(
                (ups.node.as_str(), cmd.as_str(), tracking),
                ("pi1", "test.battery.start.quick", false)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.say("SET VAR riello ups.status OB"), "ERR READONLY");
    assert_eq!(c.say("SET VAR riello no.such 1"), "ERR VAR-NOT-SUPPORTED");
    assert_eq!(
        c.step("SET TRACKING ON").effect,
        Some(Effect::Tracking(true))
    );
}

#[test]
fn wrong_passwords_count_and_a_blocked_address_is_refused_unchecked() {
    let mut c = Client::new();
    c.say("USERNAME admin");
    c.say("PASSWORD wrong");
    let step = c.step("LOGIN riello");
    assert_eq!(step.lines, ["ERR ACCESS-DENIED"]);
    assert_eq!(step.effect, Some(Effect::AuthFailed));
    let mut c = Client::new();
    c.blocked = true;
    c.say("USERNAME admin");
    c.say("PASSWORD hunter2");
    let step = c.step("LOGIN riello");
    assert_eq!(
        step.lines,
        ["ERR ACCESS-DENIED"],
        "even the right password, while blocked"
    );
    assert_eq!(step.effect, None);
}

#[test]
fn starttls_once() {
    let mut c = Client::new();
    assert_eq!(c.step("STARTTLS").effect, Some(Effect::StartTls));
    c.session.tls = true;
    assert_eq!(c.say("STARTTLS"), "ERR ALREADY-SSL-MODE");
}

#[test]
fn fsd_shows_in_front_of_the_status() {
    let mut c = Client::new();
    c.view.0[1].fsd = true;
    assert_eq!(
        c.say("GET VAR riello ups.status"),
        "VAR riello ups.status \"FSD OL\""
    );
    assert_eq!(c.say("GET TRACKING"), "OFF");
    assert_eq!(c.say("GET TRACKING abc"), "ERR FEATURE-NOT-CONFIGURED");
}

/// Random commands from upsd's vocabulary and random words: the session
/// never panics, every reply line is one line, and every command but an
/// INSTCMD (answered by the listener) gets an answer.
#[test]
fn random_conversations_keep_the_protocol_shape() {
    use rand::{Rng, SeedableRng};
    let vocabulary = [
        "VER",
        "NETVER",
        "HELP",
        "LIST",
        "GET",
        "SET",
        "VAR",
        "TYPE",
        "DESC",
        "UPS",
        "CMD",
        "RW",
        "ENUM",
        "RANGE",
        "CLIENT",
        "USERNAME",
        "PASSWORD",
        "LOGIN",
        "LOGOUT",
        "PRIMARY",
        "MASTER",
        "FSD",
        "INSTCMD",
        "STARTTLS",
        "TRACKING",
        "ON",
        "riello",
        "eaton",
        "ups",
        "nosuch",
        "ups.status",
        "admin",
        "hunter2",
        "monuser",
        "secret",
        "test.battery.start.quick",
        "NUMLOGINS",
        "UPSDESC",
        "CMDDESC",
        "",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(9271);
    for _ in 0..200 {
        let mut c = Client::new();
        for _ in 0..rng.random_range(1..30) {
            let n = rng.random_range(1..6);
            let words: Vec<String> = (0..n)
                .map(|_| vocabulary[rng.random_range(0..vocabulary.len())].to_string())
                .collect();
            let policy = Policy {
                users: &c.users,
                starttls: rng.random(),
                auth_blocked: rng.random_bool(0.1),
            };
            let step = c.session.handle(&words, &c.view, &policy);
            for l in &step.lines {
                assert!(!l.contains('\n'), "{words:?}: {l:?}");
            }
            let instcmd = matches!(step.effect, Some(Effect::Instcmd { .. }));
            assert!(!step.lines.is_empty() || instcmd, "{words:?} got no answer");
        }
    }
}
