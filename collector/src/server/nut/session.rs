//! One NUT client's conversation, pure: a command's words and a view of the
//! served UPSes in, reply lines and at most one effect out (what upsd's
//! netcmds do, with its checks in its order). The socket loop in
//! [`super::listener`] carries out the effects.

use std::collections::BTreeMap;

use super::config::{NutUser, UpsmonRole};
use super::protocol::{NutError, quote};
use super::vars::{cmd_desc, var_desc};

/// What upsd 2.8 says to VER; clients compare the protocol, not this.
pub const VERSION_LINE: &str = concat!(
    "Network UPS Tools upsd 2.8.0 - nodewarden ",
    env!("CARGO_PKG_VERSION"),
    " - https://www.networkupstools.org/"
);
/// The protocol version upsd 2.8 speaks.
pub const NETVER: &str = "1.3";
const HELP: &str =
    "Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS";

/// One UPS as served: its NUT name and what the owning agent last sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The name clients use.
    pub name: String,
    /// The agent that reads it.
    pub node: String,
    /// Its name in that agent's config (what commands address).
    pub agent_ups: String,
    pub desc: String,
    /// False when the agent is gone or lost the UPS: DATA-STALE.
    pub fresh: bool,
    pub vars: BTreeMap<String, String>,
    pub commands: Vec<String>,
    /// A primary (or the collector) raised FSD for it.
    pub fsd: bool,
    pub numlogins: usize,
}

/// What a session may look up; the listener implements it over the hub.
pub trait View {
    /// The UPS called `name` (any case, or an alias).
    fn ups(&self, name: &str) -> Option<Served>;
    /// Every served UPS, sorted by name.
    fn all(&self) -> Vec<Served>;
    /// Addresses logged in to `name`.
    fn clients(&self, name: &str) -> Vec<String>;
    /// `GET TRACKING id`'s answer.
    fn tracking(&self, id: &str) -> String;
}

/// What the listener must do after sending the reply lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Close,
    StartTls,
    /// Count a login to this UPS (by served name).
    Login(String),
    Fsd(String),
    /// Run the command on the agent; the listener writes the answer.
    Instcmd {
        /// Boxed: far larger than the other effects.
        ups: Box<Served>,
        cmd: String,
        tracking: bool,
    },
    /// A wrong user name or password: count it against the address.
    AuthFailed,
    /// SET TRACKING ON or OFF.
    Tracking(bool),
}

/// Reply lines (newline added by the listener) and an effect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    pub lines: Vec<String>,
    pub effect: Option<Effect>,
}

impl Step {
    fn line(l: impl Into<String>) -> Step {
        Step {
            lines: vec![l.into()],
            effect: None,
        }
    }
    fn err(e: NutError) -> Step {
        Step::line(e.line())
    }
    fn with(mut self, e: Effect) -> Step {
        self.effect = Some(e);
        self
    }
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct Session {
    username: Option<String>,
    password: Option<String>,
    login: Option<String>,
    /// Set once STARTTLS succeeded.
    pub tls: bool,
    pub tracking: bool,
}

/// Server-wide settings a session needs.
#[derive(Debug)]
pub struct Policy<'a> {
    pub users: &'a [NutUser],
    pub starttls: bool,
    /// This address failed too often: refuse password checks unchecked.
    pub auth_blocked: bool,
}

/// The upsd action a FLAG_USER command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Login,
    Primary,
    Fsd,
    Set,
}

fn equal_ct(a: &str, b: &str) -> bool {
    // Length leaks; the content does not.
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Session {
    /// The user name given, if any (for logs; never the password).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The UPS this session logged in to.
    pub fn login(&self) -> Option<&str> {
        self.login.as_deref()
    }

    /// Answers one command line's words.
    pub fn handle(&mut self, words: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        let Some((cmd, args)) = words.split_first() else {
            return Step::default();
        };
        let cmd = cmd.to_ascii_uppercase();
        let needs_user = matches!(
            cmd.as_str(),
            "LOGIN" | "PRIMARY" | "MASTER" | "FSD" | "SET" | "INSTCMD"
        );
        if needs_user {
            if self.username.is_none() {
                return Step::err(NutError::UsernameRequired);
            }
            if self.password.is_none() {
                return Step::err(NutError::PasswordRequired);
            }
        }
        match cmd.as_str() {
            "VER" => Step::line(VERSION_LINE),
            "NETVER" => Step::line(NETVER),
            "HELP" => Step::line(HELP),
            "STARTTLS" => self.starttls(policy),
            "USERNAME" => set_once(&mut self.username, args, NutError::AlreadySetUsername),
            "PASSWORD" => set_once(&mut self.password, args, NutError::AlreadySetPassword),
            "LOGOUT" if !args.is_empty() => Step::err(NutError::InvalidArgument),
            "LOGOUT" => Step::line("OK Goodbye").with(Effect::Close),
            "LOGIN" => self.do_login(args, view, policy),
            "PRIMARY" | "MASTER" => self.primary(&cmd, args, view, policy),
            "FSD" => self.fsd(args, view, policy),
            "SET" => self.set(args, view, policy),
            "INSTCMD" => self.instcmd(args, view, policy),
            "GET" => self.get(args, view),
            "LIST" => list(args, view),
            _ => Step::err(NutError::UnknownCommand),
        }
    }

    fn starttls(&self, policy: &Policy<'_>) -> Step {
        if self.tls {
            Step::err(NutError::AlreadySslMode)
        } else if !policy.starttls {
            Step::err(NutError::FeatureNotConfigured)
        } else {
            Step::line("OK STARTTLS").with(Effect::StartTls)
        }
    }

    /// upsd's user_checkaction: a known user, the right password, and the
    /// action allowed. A wrong name or password is an auth failure.
    fn check(&self, policy: &Policy<'_>, allowed: impl Fn(&NutUser) -> bool) -> Result<(), Step> {
        let denied = || Step::err(NutError::AccessDenied);
        if policy.auth_blocked {
            return Err(denied());
        }
        let (Some(name), Some(password)) = (&self.username, &self.password) else {
            return Err(denied());
        };
        match policy.users.iter().find(|u| &u.name == name) {
            Some(u) if equal_ct(&u.password, password) => {
                if allowed(u) {
                    Ok(())
                } else {
                    Err(denied())
                }
            }
            _ => Err(denied().with(Effect::AuthFailed)),
        }
    }

    fn check_action(&self, policy: &Policy<'_>, action: Action) -> Result<(), Step> {
        self.check(policy, |u| {
            let listed = |a: &str| u.actions.iter().any(|x| x.eq_ignore_ascii_case(a));
            match (action, u.upsmon) {
                (Action::Login, Some(_)) => true,
                (Action::Primary, Some(UpsmonRole::Primary)) => true,
                (Action::Fsd, Some(UpsmonRole::Primary)) => true,
                (Action::Fsd, _) => listed("FSD"),
                (Action::Set, _) => listed("SET"),
                _ => false,
            }
        })
    }

    fn do_login(&mut self, args: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        // upsd's netuser.c: the argument count first, then a second login.
        let [name] = args else {
            return Step::err(NutError::InvalidArgument);
        };
        if self.login.is_some() {
            return Step::err(NutError::AlreadyLoggedIn);
        }
        let Some(ups) = view.ups(name) else {
            return Step::err(NutError::UnknownUps);
        };
        if let Err(step) = self.check_action(policy, Action::Login) {
            return step;
        }
        self.login = Some(ups.name.clone());
        Step::line("OK").with(Effect::Login(ups.name))
    }

    fn primary(&self, cmd: &str, args: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        let [name] = args else {
            return Step::err(NutError::InvalidArgument);
        };
        if view.ups(name).is_none() {
            return Step::err(NutError::UnknownUps);
        }
        match self.check_action(policy, Action::Primary) {
            Ok(()) => Step::line(format!("OK {cmd}-GRANTED")),
            Err(step) => step,
        }
    }

    fn fsd(&self, args: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        let [name] = args else {
            return Step::err(NutError::InvalidArgument);
        };
        let Some(ups) = view.ups(name) else {
            return Step::err(NutError::UnknownUps);
        };
        match self.check_action(policy, Action::Fsd) {
            Ok(()) => Step::line("OK FSD-SET").with(Effect::Fsd(ups.name)),
            Err(step) => step,
        }
    }

    fn set(&self, args: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        match args {
            [what, on] if what.eq_ignore_ascii_case("TRACKING") => {
                match on.to_ascii_uppercase().as_str() {
                    "ON" => Step::line("OK").with(Effect::Tracking(true)),
                    "OFF" => Step::line("OK").with(Effect::Tracking(false)),
                    _ => Step::err(NutError::InvalidArgument),
                }
            }
            [what, ups, var, _value, ..] if what.eq_ignore_ascii_case("VAR") => {
                let ups = match available(view, ups) {
                    Ok(u) => u,
                    Err(step) => return step,
                };
                if !ups.vars.contains_key(var) {
                    return Step::err(NutError::VarNotSupported);
                }
                if let Err(step) = self.check_action(policy, Action::Set) {
                    return step;
                }
                // Every variable served here is a reading: none is writable.
                Step::err(NutError::Readonly)
            }
            _ => Step::err(NutError::InvalidArgument),
        }
    }

    fn instcmd(&self, args: &[String], view: &dyn View, policy: &Policy<'_>) -> Step {
        let [ups, cmd, ..] = args else {
            return Step::err(NutError::InvalidArgument);
        };
        let ups = match available(view, ups) {
            Ok(u) => u,
            Err(step) => return step,
        };
        if !ups.commands.iter().any(|c| c.eq_ignore_ascii_case(cmd)) {
            return Step::err(NutError::CmdNotSupported);
        }
        let allowed = |u: &NutUser| {
            u.instcmds
                .iter()
                .any(|c| c.eq_ignore_ascii_case("all") || c.eq_ignore_ascii_case(cmd))
        };
        if let Err(step) = self.check(policy, allowed) {
            return step;
        }
        Step::default().with(Effect::Instcmd {
            ups: Box::new(ups),
            cmd: cmd.to_ascii_lowercase(),
            tracking: self.tracking,
        })
    }

    fn get(&self, args: &[String], view: &dyn View) -> Step {
        let Some((what, rest)) = args.split_first() else {
            return Step::err(NutError::InvalidArgument);
        };
        let what = what.to_ascii_uppercase();
        match (what.as_str(), rest) {
            ("TRACKING", []) => Step::line(if self.tracking { "ON" } else { "OFF" }),
            ("TRACKING", [id, ..]) if self.tracking => Step::line(view.tracking(id)),
            ("TRACKING", _) => Step::err(NutError::FeatureNotConfigured),
            ("VAR", [ups, var, ..]) if var.to_ascii_lowercase().starts_with("server.") => {
                get_server_var(ups, var)
            }
            ("NUMLOGINS", [ups, ..]) => {
                with_available(view, ups, |u| format!("NUMLOGINS {ups} {}", u.numlogins))
            }
            ("UPSDESC", [ups, ..]) => match view.ups(ups) {
                Some(u) => Step::line(format!("UPSDESC {ups} {}", quote(&u.desc))),
                None => Step::err(NutError::UnknownUps),
            },
            ("VAR" | "TYPE" | "DESC", [ups, var, ..]) => get_var(&what, ups, var, view),
            ("CMDDESC", [ups, cmd, ..]) => with_available(view, ups, |_| {
                let desc = cmd_desc(cmd).unwrap_or("Description unavailable");
                format!("CMDDESC {ups} {cmd} {}", quote(desc))
            }),
            _ => Step::err(NutError::InvalidArgument),
        }
    }
}

fn set_once(slot: &mut Option<String>, args: &[String], already: NutError) -> Step {
    let [value] = args else {
        return Step::err(NutError::InvalidArgument);
    };
    if slot.is_some() {
        return Step::err(already);
    }
    *slot = Some(value.clone());
    Step::line("OK")
}

/// upsd's get_ups_ptr + ups_available: the UPS exists and its data is fresh.
fn available(view: &dyn View, name: &str) -> Result<Served, Step> {
    let ups = view
        .ups(name)
        .ok_or_else(|| Step::err(NutError::UnknownUps))?;
    if !ups.fresh {
        return Err(Step::err(NutError::DataStale));
    }
    Ok(ups)
}

fn with_available(view: &dyn View, name: &str, f: impl FnOnce(&Served) -> String) -> Step {
    match available(view, name) {
        Ok(u) => Step::line(f(&u)),
        Err(step) => step,
    }
}

fn get_server_var(ups: &str, var: &str) -> Step {
    match var.to_ascii_lowercase().as_str() {
        "server.info" => Step::line(format!("VAR {ups} server.info {}", quote(VERSION_LINE))),
        "server.version" => Step::line(format!("VAR {ups} server.version \"2.8.0\"")),
        _ => Step::err(NutError::VarNotSupported),
    }
}

/// The status as a client sees it: upsd puts FSD in front when it is set.
fn status_value(ups: &Served, var: &str, value: &str) -> String {
    if var == "ups.status" && ups.fsd {
        format!("FSD {value}")
    } else {
        value.to_string()
    }
}

fn get_var(what: &str, name: &str, var: &str, view: &dyn View) -> Step {
    let ups = match available(view, name) {
        Ok(u) => u,
        Err(step) => return step,
    };
    if what == "DESC" {
        let desc = var_desc(var).unwrap_or("Description unavailable");
        return Step::line(format!("DESC {name} {var} {}", quote(desc)));
    }
    let Some(value) = ups.vars.get(var) else {
        return Step::err(NutError::VarNotSupported);
    };
    if what == "TYPE" {
        // upsd calls every read-only variable without a type flag NUMBER,
        // text included (netget.c get_type); clients expect that.
        return Step::line(format!("TYPE {name} {var} NUMBER"));
    }
    let value = status_value(&ups, var, value);
    Step::line(format!("VAR {name} {var} {}", quote(&value)))
}

/// `LIST what [ups [var]]`: a BEGIN/END block, or the error upsd sends.
fn list(args: &[String], view: &dyn View) -> Step {
    let Some((what, rest)) = args.split_first() else {
        return Step::err(NutError::InvalidArgument);
    };
    let what = what.to_ascii_uppercase();
    if what == "UPS" {
        let mut lines = vec!["BEGIN LIST UPS".to_string()];
        for u in view.all() {
            lines.push(format!("UPS {} {}", u.name, quote(&u.desc)));
        }
        lines.push("END LIST UPS".into());
        return Step {
            lines,
            effect: None,
        };
    }
    let Some(name) = rest.first() else {
        return Step::err(NutError::InvalidArgument);
    };
    let ups = match available(view, name) {
        Ok(u) => u,
        Err(step) => return step,
    };
    let items: Vec<String> = match (what.as_str(), rest.get(1)) {
        ("VAR", _) => ups
            .vars
            .iter()
            .map(|(k, v)| format!("VAR {name} {k} {}", quote(&status_value(&ups, k, v))))
            .collect(),
        ("CMD", _) => ups
            .commands
            .iter()
            .map(|c| format!("CMD {name} {c}"))
            .collect(),
        ("RW", _) => Vec::new(),
        ("CLIENT", _) => view
            .clients(&ups.name)
            .iter()
            .map(|a| format!("CLIENT {name} {a}"))
            .collect(),
        ("ENUM" | "RANGE", Some(var)) => {
            if !ups.vars.contains_key(var.as_str()) {
                return Step::err(NutError::VarNotSupported);
            }
            let header = format!("LIST {what} {name} {var}");
            return Step {
                lines: vec![format!("BEGIN {header}"), format!("END {header}")],
                effect: None,
            };
        }
        _ => return Step::err(NutError::InvalidArgument),
    };
    let header = format!("LIST {what} {name}");
    let mut lines = Vec::with_capacity(items.len() + 2);
    lines.push(format!("BEGIN {header}"));
    lines.extend(items);
    lines.push(format!("END {header}"));
    Step {
        lines,
        effect: None,
    }
}
