//! The serial transport UPS drivers speak over: open a port with an error a
//! user can act on, send one request, read one CR-terminated reply within a
//! deadline; and find the port again after the USB cable was replugged.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort, TTYPort};

use crate::sysroot::SysRoot;
use crate::ups::model::UpsError;

/// Longest reply line read before giving up on finding its end.
pub const MAX_LINE: usize = 256;

/// The serial line every serial UPS driver talks over: a byte stream with
/// serial-port controls. `TTYPort` in production; a pty or socket in tests.
pub trait SerialIo: Read + Write + Send {
    /// Drop bytes received but not read (stale replies, noise).
    fn discard_input(&mut self) -> io::Result<()>;
    /// Longest a single read may block.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Change the line speed (a no-op where there is none).
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()>;
}

impl SerialIo for TTYPort {
    fn discard_input(&mut self) -> io::Result<()> {
        self.clear(ClearBuffer::Input).map_err(io::Error::from)
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_timeout(timeout).map_err(io::Error::from)
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        SerialPort::set_baud_rate(self, baud).map_err(io::Error::from)
    }
}

/// One end of a socket pair stands in for a serial line in the drivers'
/// tests: no line speed, and reads time out like a port's.
#[cfg(test)]
impl SerialIo for std::os::unix::net::UnixStream {
    fn discard_input(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)?;
        let mut scratch = [0u8; 256];
        let result = loop {
            match self.read(&mut scratch) {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.set_nonblocking(false)?;
        result
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, Some(timeout))
    }

    fn set_baud_rate(&mut self, _baud: u32) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the serial device `path` 8N1 at `baud` with a `timeout` per read;
/// a failure says what to do about it.
pub fn open_port(path: &str, baud: u32, timeout: Duration) -> Result<TTYPort, UpsError> {
    serialport::new(path, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(timeout)
        .open_native()
        .map_err(|e| open_error(path, e))
}

/// One request, one reply line, on a serial port.
pub struct SerialLine<P: SerialIo = TTYPort> {
    port: P,
    name: String,
    /// Per-try reply timeout.
    pub timeout: Duration,
    /// Tries per query (commands are sent once).
    pub tries: u32,
}

impl SerialLine<TTYPort> {
    /// Opens `path` 8N1 at `baud`, 1 s reply timeout, 3 tries.
    pub fn open(path: &Path, baud: u32) -> Result<Self, UpsError> {
        let name = path.display().to_string();
        let port = open_port(&name, baud, Duration::from_secs(1))?;
        Ok(SerialLine::new(port, name))
    }
}

impl<P: SerialIo> SerialLine<P> {
    /// Wraps an open stream (tests, or a port opened elsewhere).
    pub fn new(port: P, name: impl Into<String>) -> Self {
        SerialLine {
            port,
            name: name.into(),
            timeout: Duration::from_secs(1),
            tries: 3,
        }
    }

    /// The port's name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `request` once and reads one reply line. `Ok(None)`: nothing
    /// complete arrived within the timeout. A line that never ends is cut at
    /// `MAX_LINE + 1` bytes so the parser reports it as oversized.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Option<Vec<u8>>, UpsError> {
        // A reply that arrived after the previous try gave up would be read
        // as the answer to this request.
        self.port.discard_input().map_err(|e| self.io_error(e))?;
        self.port.write_all(request).map_err(|e| self.io_error(e))?;
        self.port.flush().map_err(|e| self.io_error(e))?;
        let deadline = Instant::now() + self.timeout;
        let mut line = Vec::with_capacity(64);
        let mut buf = [0u8; 64];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.port
                .set_read_timeout(left)
                .map_err(|e| self.io_error(e))?;
            match self.port.read(&mut buf) {
                Ok(0) => {
                    // A pty whose other side closed, or an unplugged adapter.
                    return Err(self.io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the device went away",
                    )));
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        line.push(b);
                        if b == b'\r' {
                            return Ok(Some(line));
                        }
                        if line.len() > MAX_LINE {
                            return Ok(Some(line));
                        }
                    }
                }
                Err(e) if no_data_yet(&e) => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn io_error(&self, source: io::Error) -> UpsError {
        UpsError::Io {
            port: self.name.clone(),
            source,
        }
    }
}

/// Maps an open failure to an error that says what to do (one place for
/// every serial driver: a missing device, the dialout group, a port another
/// program holds).
fn open_error(port: &str, e: serialport::Error) -> UpsError {
    use serialport::ErrorKind as K;
    let (kind, hint) = match e.kind() {
        K::Io(io::ErrorKind::NotFound) => (
            io::ErrorKind::NotFound,
            "; no such device; is the UPS plugged in? `nodewarden-agent ups probe` lists serial ports",
        ),
        K::Io(io::ErrorKind::PermissionDenied) => (
            io::ErrorKind::PermissionDenied,
            "; add the nodewarden user to group dialout",
        ),
        // serialport reports EBUSY and a held lock as NoDevice.
        K::NoDevice => (
            io::ErrorKind::ResourceBusy,
            "; another program holds the port (the agent itself, when this is `ups probe`? `sudo systemctl stop nodewarden-agent` first; NUT's driver? stop nut-driver or remove the UPS from ups.conf)",
        ),
        K::Io(k) => (k, ""),
        _ => (io::ErrorKind::Other, ""),
    };
    UpsError::Open {
        port: port.to_string(),
        source: io::Error::new(kind, e.description),
        hint: hint.to_string(),
    }
}

/// Where the UPS is: a device path, a USB identity, or the first USB serial
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A device path, best a /dev/serial/by-id/... link (stable across
    /// replugs).
    Path(PathBuf),
    /// `usb:VID:PID[:SERIAL]` or `VID:PID[:SERIAL]` as lsusb prints it, hex
    /// ids: found in sysfs at each (re)open.
    Usb {
        vid: u16,
        pid: u16,
        serial: Option<String>,
    },
    /// `auto`: the first USB serial port.
    Auto,
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty port (try /dev/serial/by-id/..., usb:0665:5161 or auto)".into());
        }
        if s == "auto" {
            return Ok(PortSpec::Auto);
        }
        // `lsusb` prints `ID 04b4:5500`: accept the pair as written, not
        // only with the `usb:` prefix.
        if let Some(rest) = s
            .strip_prefix("usb:")
            .or_else(|| lsusb_pair(s).then_some(s))
        {
            let mut parts = rest.splitn(3, ':');
            let hex = |p: Option<&str>, what: &str| -> Result<u16, String> {
                let p = p.unwrap_or("");
                u16::from_str_radix(p, 16).map_err(|_| {
                    format!(
                        "`{s}`: {what} `{p}` is not a 4-digit hex USB id (usb:VID:PID[:SERIAL])"
                    )
                })
            };
            let vid = hex(parts.next(), "vendor id")?;
            let pid = hex(parts.next(), "product id")?;
            let serial = parts.next().filter(|x| !x.is_empty()).map(String::from);
            return Ok(PortSpec::Usb { vid, pid, serial });
        }
        if !s.starts_with('/') {
            return Err(format!(
                "`{s}` is not a port: give an absolute device path, VID:PID[:SERIAL] as lsusb prints it (04b4:5500, or usb:04b4:5500) or auto"
            ));
        }
        Ok(PortSpec::Path(PathBuf::from(s)))
    }
}

/// `VVVV:PPPP[:SERIAL]` with four hex digits on each side, as `lsusb` prints it.
fn lsusb_pair(s: &str) -> bool {
    let b = s.as_bytes();
    let hex4 = |r: &[u8]| r.len() == 4 && r.iter().all(u8::is_ascii_hexdigit);
    b.len() >= 9
        && hex4(&b[..4])
        && b[4] == b':'
        && hex4(&b[5..9])
        && (b.len() == 9 || b[9] == b':')
}

/// A USB serial adapter found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbSerialPort {
    /// Kernel name, e.g. ttyUSB0.
    pub tty: String,
    /// Device node under the root, e.g. /dev/ttyUSB0.
    pub device: PathBuf,
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
    /// The USB device's own manufacturer and product strings.
    pub manufacturer: Option<String>,
    pub product: Option<String>,
}

/// Every tty backed by a USB device, by scanning
/// /sys/class/tty/*/device/.. upwards for idVendor/idProduct.
pub fn usb_serial_ports(root: &SysRoot) -> Vec<UsbSerialPort> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("/sys/class/tty")) else {
        return found;
    };
    // Resolved links are compared with the root, so compare like with like.
    let base = std::fs::canonicalize(root.path()).unwrap_or_else(|_| root.path().to_path_buf());
    for entry in entries.flatten() {
        let tty = entry.file_name().to_string_lossy().into_owned();
        let Ok(device) = std::fs::canonicalize(entry.path().join("device")) else {
            continue;
        };
        // ttyACM: device is the USB interface; ttyUSB: the usb-serial port
        // below the interface. The USB device with the ids is above both.
        for dir in device.ancestors().take(4) {
            if !dir.starts_with(&base) {
                break;
            }
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let (Some(v), Some(p)) = (read("idVendor"), read("idProduct")) else {
                continue;
            };
            let (Ok(vid), Ok(pid)) = (u16::from_str_radix(&v, 16), u16::from_str_radix(&p, 16))
            else {
                break;
            };
            found.push(UsbSerialPort {
                device: root.join(format!("/dev/{tty}")),
                tty: tty.clone(),
                vid,
                pid,
                serial: read("serial").filter(|s| !s.is_empty()),
                manufacturer: read("manufacturer").filter(|s| !s.is_empty()),
                product: read("product").filter(|s| !s.is_empty()),
            });
            break;
        }
    }
    found.sort_by(|a, b| a.tty.cmp(&b.tty));
    found
}

/// The device path to open now for `spec` (re-run at every reopen, so a
/// replugged adapter is found under its new name).
pub fn resolve(spec: &PortSpec, root: &SysRoot) -> Result<PathBuf, UpsError> {
    let not_found = |what: String| UpsError::Open {
        port: what,
        source: io::Error::new(io::ErrorKind::NotFound, "no matching USB serial device"),
        hint: "; is the UPS plugged in? `nodewarden-agent ups probe` lists serial ports".into(),
    };
    match spec {
        PortSpec::Path(p) => Ok(p.clone()),
        PortSpec::Auto => usb_serial_ports(root)
            .into_iter()
            .next()
            .map(|p| p.device)
            .ok_or_else(|| not_found("auto".into())),
        PortSpec::Usb { vid, pid, serial } => usb_serial_ports(root)
            .into_iter()
            .find(|p| {
                p.vid == *vid
                    && p.pid == *pid
                    && serial.as_ref().is_none_or(|s| p.serial.as_ref() == Some(s))
            })
            .map(|p| p.device)
            .ok_or_else(|| {
                not_found(format!(
                    "usb:{vid:04x}:{pid:04x}{}",
                    serial.as_ref().map(|s| format!(":{s}")).unwrap_or_default()
                ))
            }),
    }
}

/// Ports worth probing: /dev/serial/by-id/* links, then ttyUSB*/ttyACM*
/// not already reached through a link.
pub fn candidate_ports(root: &SysRoot) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut targets: Vec<PathBuf> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("/dev/serial/by-id")) {
        let mut links: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        links.sort();
        for l in links {
            if let Ok(t) = std::fs::canonicalize(&l) {
                targets.push(t);
            }
            out.push(l);
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("/dev")) {
        let mut ttys: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("ttyUSB") || n.starts_with("ttyACM")
            })
            .map(|e| e.path())
            .collect();
        ttys.sort();
        for t in ttys {
            let canon = std::fs::canonicalize(&t).unwrap_or_else(|_| t.clone());
            if !targets.contains(&canon) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// A read that returned no data but did not fail: the timeout ran out, or a
/// signal interrupted it. Callers keep waiting until their own deadline.
pub(crate) fn no_data_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
