//! NUT as a source: a client of upsd's network protocol (TCP 3493, NUT's
//! docs/net-protocol.txt), for UPSes that NUT already drives (a NAS, a
//! Riello on riello_usb, anything nodewarden has no driver for).
//!
//! The reply parser is pure (`split_words`, `parse_reply_line`,
//! `parse_list`); `NutDriver` is the thin part that owns the TCP connection,
//! reconnects when it breaks, and maps NUT variables to a `UpsReading`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nodewarden_proto::v1::{UpsIdentity, UpsRatings};

use super::model::{UpsCommandKind, UpsDriver, UpsError, UpsReading};

/// upsd's IANA port.
pub const DEFAULT_PORT: u16 = 3493;
/// Longest reply line accepted; upsd's own lines are far shorter.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Most items accepted in one LIST reply.
pub const MAX_LIST_ITEMS: usize = 10_000;
/// Connect, read and write timeout.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for a tracked command's result.
pub const COMMAND_RESULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a reply line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NutParseError {
    #[error("empty reply line")]
    Empty,
    #[error("unterminated quoted string starting at column {column}")]
    UnterminatedQuote { column: usize },
    #[error("the line ends in a lone backslash")]
    TrailingBackslash,
    #[error("reply line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("reply is not UTF-8")]
    NotUtf8,
    #[error("expected {expected:?}, got {found:?}")]
    Unexpected { expected: String, found: String },
    #[error("the list ended without {expected:?}")]
    Truncated { expected: String },
    #[error("the list has more than {MAX_LIST_ITEMS} items")]
    TooManyItems,
}

/// Splits one reply line into words the way NUT's parseconf does: words are
/// separated by blanks; "quoted strings" keep their blanks; a backslash
/// takes the next character literally (so \" and \\).
pub fn split_words(line: &str) -> Result<Vec<String>, NutParseError> {
    if line.len() > MAX_LINE_LEN {
        return Err(NutParseError::LineTooLong);
    }
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ' ' || c == '\t' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
        }
        let mut closed = !quoted;
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => word.push(escaped),
                    None => return Err(NutParseError::TrailingBackslash),
                },
                '"' if quoted => {
                    closed = true;
                    break;
                }
                ' ' | '\t' if !quoted => break,
                c => word.push(c),
            }
        }
        if !closed {
            return Err(NutParseError::UnterminatedQuote { column: start + 1 });
        }
        words.push(word);
    }
    Ok(words)
}

/// Quotes a value for a request line.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The error names of net-protocol.txt's "Error responses".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NutErrorCode {
    AccessDenied,
    UnknownUps,
    VarNotSupported,
    CmdNotSupported,
    InvalidArgument,
    InstcmdFailed,
    SetFailed,
    Readonly,
    TooLong,
    FeatureNotSupported,
    FeatureNotConfigured,
    AlreadySslMode,
    DriverNotConnected,
    DataStale,
    AlreadyLoggedIn,
    InvalidPassword,
    AlreadySetPassword,
    InvalidUsername,
    AlreadySetUsername,
    UsernameRequired,
    PasswordRequired,
    UnknownCommand,
    InvalidValue,
    /// A tracked command failed (GET TRACKING's ERR UNKNOWN / FAILED).
    Failed,
    Unknown,
    /// A name this client does not know.
    Other(String),
}

const CODES: &[(&str, NutErrorCode)] = &[
    ("ACCESS-DENIED", NutErrorCode::AccessDenied),
    ("UNKNOWN-UPS", NutErrorCode::UnknownUps),
    ("VAR-NOT-SUPPORTED", NutErrorCode::VarNotSupported),
    ("CMD-NOT-SUPPORTED", NutErrorCode::CmdNotSupported),
    ("INVALID-ARGUMENT", NutErrorCode::InvalidArgument),
    ("INSTCMD-FAILED", NutErrorCode::InstcmdFailed),
    ("SET-FAILED", NutErrorCode::SetFailed),
    ("READONLY", NutErrorCode::Readonly),
    ("TOO-LONG", NutErrorCode::TooLong),
    ("FEATURE-NOT-SUPPORTED", NutErrorCode::FeatureNotSupported),
    ("FEATURE-NOT-CONFIGURED", NutErrorCode::FeatureNotConfigured),
    ("ALREADY-SSL-MODE", NutErrorCode::AlreadySslMode),
    ("DRIVER-NOT-CONNECTED", NutErrorCode::DriverNotConnected),
    ("DATA-STALE", NutErrorCode::DataStale),
    ("ALREADY-LOGGED-IN", NutErrorCode::AlreadyLoggedIn),
    ("INVALID-PASSWORD", NutErrorCode::InvalidPassword),
    ("ALREADY-SET-PASSWORD", NutErrorCode::AlreadySetPassword),
    ("INVALID-USERNAME", NutErrorCode::InvalidUsername),
    ("ALREADY-SET-USERNAME", NutErrorCode::AlreadySetUsername),
    ("USERNAME-REQUIRED", NutErrorCode::UsernameRequired),
    ("PASSWORD-REQUIRED", NutErrorCode::PasswordRequired),
    ("UNKNOWN-COMMAND", NutErrorCode::UnknownCommand),
    ("INVALID-VALUE", NutErrorCode::InvalidValue),
    ("FAILED", NutErrorCode::Failed),
    ("UNKNOWN", NutErrorCode::Unknown),
];

impl NutErrorCode {
    /// The code for a wire name.
    pub fn from_wire(name: &str) -> NutErrorCode {
        CODES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| NutErrorCode::Other(name.to_string()))
    }

    /// The wire name.
    pub fn wire_name(&self) -> &str {
        match self {
            NutErrorCode::Other(name) => name,
            code => CODES
                .iter()
                .find(|(_, c)| c == code)
                .map(|(n, _)| *n)
                .unwrap_or("?"),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            NutErrorCode::AccessDenied => {
                "the NUT user lacks the right; give it `instcmds = ALL` (and `actions = SET` \
                 for shutdown delays) in upsd.users"
            }
            NutErrorCode::UsernameRequired | NutErrorCode::PasswordRequired => {
                "commands need a NUT user: set nut_user and nut_password for this UPS, \
                 matching a upsd.users entry with `instcmds = ALL`"
            }
            NutErrorCode::InvalidPassword | NutErrorCode::InvalidUsername => {
                "check nut_user and nut_password against upsd.users"
            }
            NutErrorCode::UnknownUps => "`upsc -l <host>` lists the UPS names upsd knows",
            NutErrorCode::DataStale => {
                "the NUT driver has lost the UPS; check the UPS cable and the driver on the NUT host"
            }
            NutErrorCode::DriverNotConnected => {
                "upsd has no running driver for this UPS; start it (upsdrvctl start) on the NUT host"
            }
            NutErrorCode::CmdNotSupported => "this UPS does not offer that command (see upscmd -l)",
            NutErrorCode::InstcmdFailed | NutErrorCode::Failed | NutErrorCode::Unknown => {
                "the NUT driver could not carry the command out; see its log on the NUT host"
            }
            _ => "see NUT's net-protocol documentation",
        }
    }
}

impl fmt::Display for NutErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// One reply line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NutReply {
    /// "OK" and what follows it ("OK TRACKING <id>", "OK Goodbye").
    Ok(Vec<String>),
    /// "ERR <code> [<extra>...]".
    Err {
        code: NutErrorCode,
        extra: Vec<String>,
    },
    /// Anything else ("VAR ups name value", "BEGIN LIST ...", "PENDING").
    Words(Vec<String>),
}

/// Classifies one reply line (without its newline).
pub fn parse_reply_line(line: &str) -> Result<NutReply, NutParseError> {
    let mut words = split_words(line.trim_end_matches(['\r', '\n']))?;
    match words.first().map(String::as_str) {
        None => Err(NutParseError::Empty),
        Some("OK") => Ok(NutReply::Ok(words.split_off(1))),
        Some("ERR") => {
            let rest = words.split_off(1);
            let code = rest
                .first()
                .map(|c| NutErrorCode::from_wire(c))
                .unwrap_or_else(|| NutErrorCode::Other(String::new()));
            Ok(NutReply::Err {
                code,
                extra: rest.into_iter().skip(1).collect(),
            })
        }
        Some(_) => Ok(NutReply::Words(words)),
    }
}

/// Parses a whole LIST block for `query` (e.g. ["VAR", "ups"]): "BEGIN LIST
/// VAR ups", items "VAR ups <rest...>", "END LIST VAR ups". Returns each
/// item's words after the query's first word and, for per-UPS lists, the
/// UPS name. `lines` may run past the END line; that rest is ignored.
pub fn parse_list(lines: &[&str], query: &[&str]) -> Result<Vec<Vec<String>>, NutParseError> {
    let expect = |prefix: &str| format!("{prefix} LIST {}", query.join(" "));
    let begin = expect("BEGIN");
    let mut iter = lines.iter();
    let first = iter.next().ok_or(NutParseError::Truncated {
        expected: begin.clone(),
    })?;
    let words = split_words(first)?;
    if !starts_with(&words, &["BEGIN", "LIST"], query) {
        return Err(NutParseError::Unexpected {
            expected: begin,
            found: first.to_string(),
        });
    }
    let item_prefix: Vec<&str> = query.iter().take(2).copied().collect();
    let mut items = Vec::new();
    for line in iter {
        let words = split_words(line)?;
        if starts_with(&words, &["END", "LIST"], query) && words.len() == query.len() + 2 {
            return Ok(items);
        }
        if words.len() <= item_prefix.len() || !words.iter().zip(&item_prefix).all(|(w, p)| w == p)
        {
            return Err(NutParseError::Unexpected {
                expected: format!("{} ... or {}", item_prefix.join(" "), expect("END")),
                found: line.to_string(),
            });
        }
        if items.len() >= MAX_LIST_ITEMS {
            return Err(NutParseError::TooManyItems);
        }
        items.push(words[item_prefix.len()..].to_vec());
    }
    Err(NutParseError::Truncated {
        expected: expect("END"),
    })
}

fn starts_with(words: &[String], head: &[&str], query: &[&str]) -> bool {
    words.len() >= head.len() + query.len()
        && words
            .iter()
            .zip(head.iter().chain(query))
            .all(|(w, e)| w == e)
}

/// Why talking to upsd failed.
#[derive(Debug, thiserror::Error)]
pub enum NutError {
    #[error("bad NUT address {0:?}: expected upsname@host[:port]")]
    BadAddress(String),
    #[error("cannot connect to upsd at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("lost the connection to upsd at {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("upsd at {addr} answered `{request}` with ERR {code}: {}", code.hint())]
    Server {
        addr: String,
        request: String,
        code: NutErrorCode,
    },
    #[error("upsd at {addr} sent a reply nodewarden cannot read: {error}")]
    Parse { addr: String, error: NutParseError },
}

impl NutError {
    /// The ERR code, when upsd refused.
    pub fn code(&self) -> Option<&NutErrorCode> {
        match self {
            NutError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The driver-neutral error; `command` is the NUT command being sent,
    /// if any.
    pub fn into_ups_error(self, port: &str, command: Option<&'static str>) -> UpsError {
        let message = self.to_string();
        match self {
            NutError::BadAddress(_) => UpsError::Open {
                port: port.into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, message),
                hint: String::new(),
            },
            NutError::Connect { source, .. } => UpsError::Open {
                port: port.into(),
                source,
                hint: "; is upsd running and listening there (LISTEN in upsd.conf)?".into(),
            },
            NutError::Io { source, .. } => UpsError::Io {
                port: port.into(),
                source,
            },
            NutError::Server {
                code: NutErrorCode::UnknownUps,
                ..
            } => UpsError::Open {
                port: port.into(),
                source: io::Error::new(io::ErrorKind::NotFound, message),
                hint: String::new(),
            },
            // The UPS is out of reach behind upsd: as lost as a pulled cable.
            NutError::Server {
                code: NutErrorCode::DataStale | NutErrorCode::DriverNotConnected,
                ..
            } => UpsError::Io {
                port: port.into(),
                source: io::Error::other(message),
            },
            NutError::Server { .. } => match command {
                Some(command) => UpsError::Refused {
                    command,
                    reason: message,
                },
                None => UpsError::Protocol(message),
            },
            NutError::Parse { .. } => UpsError::Protocol(message),
        }
    }
}

/// NUT instant commands nodewarden knows by name (supported_commands needs
/// static names).
const KNOWN_COMMANDS: &[&str] = &[
    "shutdown.return",
    "shutdown.stayoff",
    "shutdown.stop",
    "shutdown.reboot",
    "shutdown.reboot.graceful",
    "load.off",
    "load.on",
    "load.off.delay",
    "load.on.delay",
    "test.battery.start",
    "test.battery.start.quick",
    "test.battery.start.deep",
    "test.battery.stop",
    "test.panel.start",
    "test.panel.stop",
    "calibrate.start",
    "calibrate.stop",
    "beeper.enable",
    "beeper.disable",
    "beeper.mute",
    "beeper.toggle",
    "bypass.start",
    "bypass.stop",
];

/// Splits "ups@host:port" (host may be "[v6]"; port defaults to 3493; a bare
/// "ups" means localhost).
pub fn parse_address(addr: &str) -> Result<(String, String, u16), NutError> {
    let bad = || NutError::BadAddress(addr.to_string());
    let (ups, rest) = addr.split_once('@').unwrap_or((addr, "localhost"));
    if ups.is_empty() || ups.contains(char::is_whitespace) || rest.is_empty() {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => DEFAULT_PORT,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((ups.to_string(), host.to_string(), port))
}

struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A UPS read through upsd.
pub struct NutDriver {
    ups: String,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    login: bool,
    timeout: Duration,
    conn: Option<Connection>,
    /// Whether upsd accepted SET TRACKING ON on this connection.
    tracking: bool,
    commands: Vec<String>,
}

impl NutDriver {
    /// Connects to upsd for `addr` ("ups@host:3493"), authenticating with
    /// `credentials` (needed only for commands), and checks that upsd knows
    /// the UPS.
    pub fn connect(addr: &str, credentials: Option<(String, String)>) -> Result<Self, UpsError> {
        let (ups, host, port) = parse_address(addr).map_err(|e| e.into_ups_error(addr, None))?;
        let mut driver = NutDriver {
            ups,
            host,
            port,
            credentials,
            login: false,
            timeout: TIMEOUT,
            conn: None,
            tracking: false,
            commands: Vec::new(),
        };
        let port_name = driver.port();
        driver
            .get_var("ups.status")
            .or_else(|e| match e.code() {
                // A UPS whose driver lost it still exists.
                Some(NutErrorCode::DataStale) => Ok(String::new()),
                _ => Err(e),
            })
            .map_err(|e| e.into_ups_error(&port_name, None))?;
        driver.commands = driver.list_commands().unwrap_or_default();
        Ok(driver)
    }

    /// Also send LOGIN, so upsd counts this host among the UPS's clients (a
    /// NUT primary then waits for it before cutting power). Needs `upsmon
    /// secondary` for the user in upsd.users.
    pub fn with_login(mut self) -> Result<Self, UpsError> {
        self.login = true;
        self.conn = None;
        let port = self.port();
        self.ensure_connected()
            .map_err(|e| e.into_ups_error(&port, None))?;
        Ok(self)
    }

    /// Connect, read and write timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.conn = None;
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn open(&self) -> Result<Connection, NutError> {
        let addr = self.addr();
        let connect_err = |source| NutError::Connect {
            addr: addr.clone(),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to nothing");
        // A `.local` upsd host falls back to our own Multicast DNS query
        // (see crate::mdns).
        let addrs = crate::mdns::lookup_host_blocking(&self.host, self.port)
            .map_err(|e| connect_err(io::Error::new(io::ErrorKind::NotFound, e)))?;
        for sock in addrs {
            match TcpStream::connect_timeout(&sock, self.timeout) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                        .and_then(|()| stream.set_nodelay(true))
                        .map_err(connect_err)?;
                    let writer = stream.try_clone().map_err(connect_err)?;
                    return Ok(Connection {
                        reader: BufReader::new(stream),
                        writer,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }

    fn ensure_connected(&mut self) -> Result<(), NutError> {
        if self.conn.is_some() {
            return Ok(());
        }
        self.conn = Some(self.open()?);
        self.tracking = false;
        let result = self.authenticate();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn authenticate(&mut self) -> Result<(), NutError> {
        let Some((user, pass)) = self.credentials.clone() else {
            return Ok(());
        };
        self.simple(&format!("USERNAME {}", quote(&user)))?;
        self.simple(&format!("PASSWORD {}", quote(&pass)))?;
        // With tracking upsd reports whether the driver carried a command
        // out; without it, OK only means "passed to the driver".
        self.tracking = self.simple("SET TRACKING ON").is_ok();
        if self.login {
            self.simple(&format!("LOGIN {}", self.ups))?;
        }
        Ok(())
    }

    fn io_error(&self, source: io::Error) -> NutError {
        NutError::Io {
            addr: self.addr(),
            source,
        }
    }

    fn send_line(&mut self, line: &str) -> Result<(), NutError> {
        let addr = self.addr();
        let conn = self.conn.as_mut().ok_or_else(|| NutError::Io {
            addr,
            source: io::Error::from(io::ErrorKind::NotConnected),
        })?;
        let result = conn
            .writer
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| conn.writer.flush());
        result.map_err(|e| self.io_error(e))
    }

    fn read_line(&mut self) -> Result<String, NutError> {
        let addr = self.addr();
        let conn = self.conn.as_mut().ok_or_else(|| NutError::Io {
            addr: addr.clone(),
            source: io::Error::from(io::ErrorKind::NotConnected),
        })?;
        let mut raw = Vec::new();
        let n = (&mut conn.reader)
            .take(MAX_LINE_LEN as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|source| NutError::Io {
                addr: addr.clone(),
                source,
            })?;
        if n == 0 {
            return Err(NutError::Io {
                addr,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "upsd closed the connection"),
            });
        }
        if raw.last() != Some(&b'\n') {
            let error = if raw.len() > MAX_LINE_LEN {
                NutParseError::LineTooLong
            } else {
                NutParseError::Truncated {
                    expected: "a newline".into(),
                }
            };
            return Err(NutError::Parse { addr, error });
        }
        let line = String::from_utf8(raw).map_err(|_| NutError::Parse {
            addr,
            error: NutParseError::NotUtf8,
        })?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Sends one request and reads a one-line reply; ERR becomes an error.
    fn simple(&mut self, request: &str) -> Result<NutReply, NutError> {
        self.send_line(request)?;
        let line = self.read_line()?;
        self.classify(request, &line)
    }

    fn classify(&self, request: &str, line: &str) -> Result<NutReply, NutError> {
        match parse_reply_line(line) {
            Ok(NutReply::Err { code, .. }) => Err(NutError::Server {
                addr: self.addr(),
                request: shown_request(request),
                code,
            }),
            Ok(reply) => Ok(reply),
            Err(error) => Err(NutError::Parse {
                addr: self.addr(),
                error,
            }),
        }
    }

    /// Runs `op` on a live connection; when the connection turns out to be
    /// broken (upsd restarted, NAT dropped it) reconnects once and retries.
    fn with_retry<R>(
        &mut self,
        mut op: impl FnMut(&mut NutDriver) -> Result<R, NutError>,
    ) -> Result<R, NutError> {
        let fresh = self.conn.is_none();
        self.ensure_connected()?;
        match op(self) {
            Err(NutError::Io { .. } | NutError::Parse { .. }) if !fresh => {
                self.conn = None;
                self.ensure_connected()?;
                op(self)
            }
            Err(e @ (NutError::Io { .. } | NutError::Parse { .. })) => {
                self.conn = None;
                Err(e)
            }
            other => other,
        }
    }

    fn list(&mut self, query: &[&str]) -> Result<Vec<Vec<String>>, NutError> {
        let request = format!("LIST {}", query.join(" "));
        self.with_retry(|d| {
            d.send_line(&request)?;
            let first = d.read_line()?;
            d.classify(&request, &first)?;
            let mut lines = vec![first];
            let end = format!("END LIST {}", query.join(" "));
            loop {
                let line = d.read_line()?;
                let done = split_words(&line)
                    .map(|w| w.join(" ") == end)
                    .unwrap_or(false);
                lines.push(line);
                if done || lines.len() > MAX_LIST_ITEMS + 2 {
                    break;
                }
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            parse_list(&refs, query).map_err(|error| NutError::Parse {
                addr: d.addr(),
                error,
            })
        })
    }

    /// LIST UPS: names and descriptions upsd serves.
    pub fn list_ups(&mut self) -> Result<Vec<(String, String)>, NutError> {
        Ok(self
            .list(&["UPS"])?
            .into_iter()
            .map(|w| (w[0].clone(), w.get(1).cloned().unwrap_or_default()))
            .collect())
    }

    /// LIST VAR: every variable of this UPS.
    pub fn list_vars(&mut self) -> Result<BTreeMap<String, String>, NutError> {
        let ups = self.ups.clone();
        Ok(self
            .list(&["VAR", &ups])?
            .into_iter()
            .map(|w| (w[0].clone(), w.get(1).cloned().unwrap_or_default()))
            .collect())
    }

    /// GET VAR: one variable.
    pub fn get_var(&mut self, name: &str) -> Result<String, NutError> {
        let request = format!("GET VAR {} {name}", self.ups);
        let ups = self.ups.clone();
        self.with_retry(|d| match d.simple(&request)? {
            NutReply::Words(w) if w.len() == 4 && w[0] == "VAR" && w[1] == ups && w[2] == name => {
                Ok(w[3].clone())
            }
            other => Err(NutError::Parse {
                addr: d.addr(),
                error: NutParseError::Unexpected {
                    expected: format!("VAR {ups} {name} \"<value>\""),
                    found: format!("{other:?}"),
                },
            }),
        })
    }

    /// LIST CMD: the instant commands this UPS offers.
    pub fn list_commands(&mut self) -> Result<Vec<String>, NutError> {
        let ups = self.ups.clone();
        Ok(self
            .list(&["CMD", &ups])?
            .into_iter()
            .map(|mut w| w.swap_remove(0))
            .collect())
    }

    /// SET VAR (needs `actions = SET`).
    pub fn set_var(&mut self, name: &str, value: &str) -> Result<(), NutError> {
        let request = format!("SET VAR {} {name} {}", self.ups, quote(value));
        self.with_retry(|d| {
            let reply = d.simple(&request)?;
            d.await_tracking(&request, reply)
        })
    }

    /// INSTCMD (needs `instcmds` for the user). With tracking, waits for the
    /// driver's verdict.
    pub fn instcmd(&mut self, name: &str, param: Option<&str>) -> Result<(), NutError> {
        let request = match param {
            Some(p) => format!("INSTCMD {} {name} {}", self.ups, quote(p)),
            None => format!("INSTCMD {} {name}", self.ups),
        };
        self.with_retry(|d| {
            let reply = d.simple(&request)?;
            d.await_tracking(&request, reply)
        })
    }

    fn await_tracking(&mut self, request: &str, reply: NutReply) -> Result<(), NutError> {
        let id = match reply {
            NutReply::Ok(rest) if rest.len() == 2 && rest[0] == "TRACKING" => rest[1].clone(),
            NutReply::Ok(_) => return Ok(()),
            other => {
                return Err(NutError::Parse {
                    addr: self.addr(),
                    error: NutParseError::Unexpected {
                        expected: "OK".into(),
                        found: format!("{other:?}"),
                    },
                });
            }
        };
        let deadline = Instant::now() + COMMAND_RESULT_TIMEOUT;
        loop {
            match self.simple(&format!("GET TRACKING {id}")) {
                Ok(NutReply::Words(w)) if w.first().map(String::as_str) == Some("PENDING") => {}
                Ok(NutReply::Words(w)) if w.first().map(String::as_str) == Some("SUCCESS") => {
                    return Ok(());
                }
                Ok(other) => {
                    return Err(NutError::Parse {
                        addr: self.addr(),
                        error: NutParseError::Unexpected {
                            expected: "PENDING, SUCCESS or ERR".into(),
                            found: format!("{other:?}"),
                        },
                    });
                }
                Err(NutError::Server { code, .. }) => {
                    return Err(NutError::Server {
                        addr: self.addr(),
                        request: shown_request(request),
                        code,
                    });
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                // The driver has it but has not answered: as much as upsd
                // without tracking would tell.
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn has_command(&self, name: &str) -> bool {
        self.commands.iter().any(|c| c == name)
    }

    fn set_delay(
        &mut self,
        vars: &BTreeMap<String, String>,
        name: &str,
        seconds: u32,
    ) -> Result<(), NutError> {
        if !vars.contains_key(name) {
            return Ok(());
        }
        match self.set_var(name, &seconds.to_string()) {
            // Many drivers fix their delays (riello_ser has no SET at all):
            // shutting down with the UPS's own delay beats not shutting down.
            Err(e @ NutError::Server { .. }) => {
                tracing::warn!(ups = %self.ups, "cannot set {name} to {seconds} s, the UPS keeps its own: {e}");
                Ok(())
            }
            other => other,
        }
    }
}

/// A request as error messages show it: the first three words (values can
/// be long), and never a password.
fn shown_request(request: &str) -> String {
    if request.starts_with("PASSWORD") {
        return "PASSWORD ***".into();
    }
    request.split(' ').take(3).collect::<Vec<_>>().join(" ")
}

fn number(vars: &BTreeMap<String, String>, name: &str) -> Option<f64> {
    vars.get(name)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn first_text(vars: &BTreeMap<String, String>, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| vars.get(*n))
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The reading NUT variables describe.
pub fn reading_from_vars(vars: &BTreeMap<String, String>) -> UpsReading {
    UpsReading {
        status: vars
            .get("ups.status")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        input_voltage_volts: number(vars, "input.voltage"),
        output_voltage_volts: number(vars, "output.voltage"),
        input_frequency_hertz: number(vars, "input.frequency"),
        load_percent: number(vars, "ups.load"),
        battery_voltage_volts: number(vars, "battery.voltage"),
        battery_charge_percent: number(vars, "battery.charge"),
        battery_charge_estimated: false,
        battery_runtime_seconds: number(vars, "battery.runtime"),
        battery_runtime_estimated: false,
        temperature_celsius: number(vars, "ups.temperature"),
    }
}

/// The ratings NUT variables describe.
pub fn ratings_from_vars(vars: &BTreeMap<String, String>) -> UpsRatings {
    let either = |a: &str, b: &str| number(vars, a).or_else(|| number(vars, b));
    UpsRatings {
        input_voltage_volts: number(vars, "input.voltage.nominal"),
        output_voltage_volts: number(vars, "output.voltage.nominal"),
        current_amperes: either("output.current.nominal", "input.current.nominal"),
        battery_voltage_volts: number(vars, "battery.voltage.nominal"),
        frequency_hertz: either("output.frequency.nominal", "input.frequency.nominal"),
        power_va: number(vars, "ups.power.nominal"),
        real_power_watts: number(vars, "ups.realpower.nominal"),
    }
}

impl UpsDriver for NutDriver {
    fn protocol(&self) -> &'static str {
        "nut"
    }

    fn port(&self) -> String {
        format!("{}@{}", self.ups, self.addr())
    }

    fn identify(&mut self) -> Result<UpsIdentity, UpsError> {
        let port = self.port();
        let vars = self
            .list_vars()
            .map_err(|e| e.into_ups_error(&port, None))?;
        if let Ok(commands) = self.list_commands() {
            self.commands = commands;
        }
        Ok(UpsIdentity {
            manufacturer: first_text(&vars, &["device.mfr", "ups.mfr"]),
            model: first_text(&vars, &["device.model", "ups.model"]),
            firmware: first_text(&vars, &["ups.firmware"]),
            driver: "nut".into(),
            port,
            serial_number: first_text(&vars, &["device.serial", "ups.serial"]),
        })
    }

    fn ratings(&mut self) -> Result<UpsRatings, UpsError> {
        let port = self.port();
        let vars = self
            .list_vars()
            .map_err(|e| e.into_ups_error(&port, None))?;
        Ok(ratings_from_vars(&vars))
    }

    fn poll(&mut self) -> Result<UpsReading, UpsError> {
        let port = self.port();
        let vars = self
            .list_vars()
            .map_err(|e| e.into_ups_error(&port, None))?;
        Ok(reading_from_vars(&vars))
    }

    fn supported_commands(&self) -> Vec<&'static str> {
        KNOWN_COMMANDS
            .iter()
            .copied()
            .filter(|c| self.has_command(c))
            .collect()
    }

    fn command(&mut self, command: UpsCommandKind) -> Result<(), UpsError> {
        let port = self.port();
        let name = command.nut_name();
        // Units that only offer the generic battery test get that one.
        let name = match command {
            UpsCommandKind::BatteryTestQuick
                if !self.has_command(name) && self.has_command("test.battery.start") =>
            {
                "test.battery.start"
            }
            _ => name,
        };
        let result = (|| {
            match command {
                UpsCommandKind::ShutdownReturn {
                    off_delay_s,
                    restore_delay_s,
                } => {
                    let vars = self.list_vars()?;
                    self.set_delay(&vars, "ups.delay.shutdown", off_delay_s)?;
                    self.set_delay(&vars, "ups.delay.start", restore_delay_s)?;
                }
                UpsCommandKind::ShutdownStayOff { off_delay_s } => {
                    let vars = self.list_vars()?;
                    self.set_delay(&vars, "ups.delay.shutdown", off_delay_s)?;
                }
                _ => {}
            }
            self.instcmd(name, None)
        })();
        result.map_err(|e| e.into_ups_error(&port, Some(name)))
    }
}

#[cfg(test)]
mod tests;
