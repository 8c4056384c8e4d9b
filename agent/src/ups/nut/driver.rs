//! The blocking upsd client: owns the TCP connection, authenticates,
//! reconnects when it breaks, and sends commands with tracking.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nodewarden_proto::v1::{UpsIdentity, UpsRatings};

use super::protocol::{
    DEFAULT_PORT, KNOWN_COMMANDS, MAX_LINE_LEN, MAX_LIST_ITEMS, NutErrorCode, NutParseError,
    NutReply, first_text, parse_list, parse_reply_line, quote, ratings_from_vars,
    reading_from_vars, split_words,
};
use crate::ups::model::{AppliedDelays, UpsCommandKind, UpsDriver, UpsError, UpsReading};

/// Connect, read and write timeout.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for a tracked command's result.
pub const COMMAND_RESULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a delay just set may take to show in GET VAR.
const SET_VAR_SETTLE: Duration = Duration::from_secs(2);

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

    /// The SET VAR request line for `name` = `value`.
    fn set_var_request(&self, name: &str, value: &str) -> String {
        format!("SET VAR {} {name} {}", self.ups, quote(value))
    }

    /// SET VAR (needs `actions = SET`).
    pub fn set_var(&mut self, name: &str, value: &str) -> Result<(), NutError> {
        let request = self.set_var_request(name, value);
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

    /// Sets each delay in `wanted` the UPS has, and reads back the ones it
    /// will use (in `wanted`'s order; None: the UPS publishes no such delay).
    /// A refused SET leaves the UPS's own (usbhid-ups 20 s, riello_ser 5 s):
    /// shutting down with it beats not shutting down, and the collector,
    /// told the real value, decides whether it is enough. The SETs are not
    /// tracked: a driver without a SET handler (riello_ser) never answers
    /// one, and the read-back says what happened within a bounded wait.
    fn set_delays(
        &mut self,
        vars: &BTreeMap<String, String>,
        wanted: &[(&str, u32)],
    ) -> Result<Vec<Option<u32>>, NutError> {
        let mut sent = vec![false; wanted.len()];
        for (i, (name, seconds)) in wanted.iter().enumerate() {
            if !vars.contains_key(*name) {
                continue;
            }
            let request = self.set_var_request(name, &seconds.to_string());
            match self.with_retry(|d| d.simple(&request)) {
                Ok(NutReply::Ok(_)) => sent[i] = true,
                Ok(other) => {
                    tracing::warn!(ups = %self.ups, "SET VAR {name}: unexpected reply {other:?}");
                }
                Err(e @ NutError::Server { .. }) => {
                    tracing::warn!(ups = %self.ups, "cannot set {name} to {seconds} s, the UPS keeps its own: {e}");
                }
                Err(other) => return Err(other),
            }
        }
        // upsd answers before the driver has published the new values.
        let deadline = Instant::now() + SET_VAR_SETTLE;
        loop {
            let now: Vec<Option<u32>> = wanted
                .iter()
                .map(|(name, _)| {
                    vars.contains_key(*name)
                        .then(|| self.get_var(name).ok())
                        .flatten()
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
                .collect();
            let settled = wanted
                .iter()
                .zip(&now)
                .zip(&sent)
                .all(|(((_, want), got), sent)| !sent || *got == Some(*want));
            if settled || Instant::now() >= deadline {
                return Ok(now);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A request as error messages show it: the first three words (values can
/// be long), and never a password.
pub(super) fn shown_request(request: &str) -> String {
    if request.starts_with("PASSWORD") {
        return "PASSWORD ***".into();
    }
    request.split(' ').take(3).collect::<Vec<_>>().join(" ")
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

    fn command(&mut self, command: UpsCommandKind) -> Result<AppliedDelays, UpsError> {
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
            let mut applied = AppliedDelays::NONE;
            match command {
                UpsCommandKind::ShutdownReturn {
                    off_delay_s,
                    restore_delay_s,
                } => {
                    let vars = self.list_vars()?;
                    let wanted = [
                        ("ups.delay.shutdown", off_delay_s),
                        ("ups.delay.start", restore_delay_s),
                    ];
                    if let [off, restore] = self.set_delays(&vars, &wanted)?[..] {
                        applied.off_delay_s = off;
                        applied.restore_delay_s = restore;
                    }
                }
                UpsCommandKind::ShutdownStayOff { off_delay_s } => {
                    let vars = self.list_vars()?;
                    let wanted = [("ups.delay.shutdown", off_delay_s)];
                    applied.off_delay_s =
                        self.set_delays(&vars, &wanted)?.first().copied().flatten();
                }
                _ => {}
            }
            self.instcmd(name, None).map(|()| applied)
        })();
        result.map_err(|e| e.into_ups_error(&port, Some(name)))
    }
}
