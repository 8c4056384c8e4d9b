//! `nodewarden-agent ups probe`: which UPS answers where. Every serial
//! protocol the agent speaks is tried on a port (Megatec at 2400 baud,
//! GPSER at 9600 then 1200 with its checksum or CRC), and what answered is
//! told with its identity and status; with no port, the USB serial adapters
//! are listed (vendor, product, `/dev/serial/by-id` name) and each probed.

use std::path::{Path, PathBuf};

use nodewarden_proto::v1::UpsIdentity;
use serde_json::{Value, json};

use crate::sysroot::SysRoot;
use crate::ups::gpser::GpserDriver;
use crate::ups::gpser::protocol::CheckKind;
use crate::ups::megatec::{BatteryTuning, DEFAULT_BAUD, MegatecDriver};
use crate::ups::model::{UpsDriver, UpsError, UpsReading};
use crate::ups::serial::{UsbSerialPort, usb_serial_ports};

/// A protocol that answered on a port.
#[derive(Debug, Clone)]
pub struct Answer {
    /// "megatec" or "gpser".
    pub protocol: &'static str,
    pub baud: u32,
    /// GPSER's frame check: "checksum" or "crc".
    pub check: Option<&'static str>,
    pub identity: UpsIdentity,
    pub reading: UpsReading,
}

/// What one port said to each protocol.
#[derive(Debug)]
pub struct PortReport {
    pub port: PathBuf,
    /// The USB adapter behind it, when it is one.
    pub adapter: Option<Adapter>,
    pub answers: Vec<Answer>,
    /// (protocol, why it did not answer).
    pub silent: Vec<(&'static str, String)>,
}

/// A USB serial adapter as sysfs and udev name it.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub usb: UsbSerialPort,
    /// Its /dev/serial/by-id link, the name that survives replugging.
    pub by_id: Option<PathBuf>,
}

/// Megatec/Q1 at `baud` (default 2400).
pub fn probe_megatec(port: &Path, baud: Option<u32>) -> Result<Answer, UpsError> {
    let mut d = MegatecDriver::open(port, baud, BatteryTuning::default())?;
    let reading = d.poll()?;
    let identity = d.identify()?;
    Ok(Answer {
        protocol: "megatec",
        baud: baud.unwrap_or(DEFAULT_BAUD),
        check: None,
        identity,
        reading,
    })
}

/// GPSER at `baud`, or 9600 then 1200; the check is what the UPS asked for.
pub fn probe_gpser(port: &Path, baud: Option<u32>) -> Result<Answer, UpsError> {
    let mut d = GpserDriver::open(&port.display().to_string(), baud)?;
    let reading = d.poll()?;
    let identity = d.identify()?;
    Ok(Answer {
        protocol: "gpser",
        baud: d.baud(),
        check: Some(match d.identification().check {
            CheckKind::Sum => "checksum",
            CheckKind::Crc => "crc",
        }),
        identity,
        reading,
    })
}

/// One protocol's probe.
type Prober = fn(&Path, Option<u32>) -> Result<Answer, UpsError>;

/// Tries every protocol on `port`.
pub fn probe_port(port: &Path, baud: Option<u32>, adapter: Option<Adapter>) -> PortReport {
    let mut report = PortReport {
        port: port.to_path_buf(),
        adapter,
        answers: Vec::new(),
        silent: Vec::new(),
    };
    let tries: [(&'static str, Prober); 2] = [("megatec", probe_megatec), ("gpser", probe_gpser)];
    for (name, probe) in tries {
        match probe(port, baud) {
            Ok(a) => report.answers.push(a),
            // A port that cannot be opened will not open for the next one.
            Err(e @ UpsError::Open { .. }) => {
                report.silent.push((name, e.to_string()));
                break;
            }
            Err(e) => report.silent.push((name, e.to_string())),
        }
    }
    report
}

/// Every USB serial adapter, with its by-id link.
pub fn adapters(root: &SysRoot) -> Vec<Adapter> {
    let links: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(root.join("/dev/serial/by-id"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let target = std::fs::canonicalize(e.path()).ok()?;
                    Some((e.path(), target))
                })
                .collect()
        })
        .unwrap_or_default();
    usb_serial_ports(root)
        .into_iter()
        .map(|usb| {
            let real = std::fs::canonicalize(&usb.device).unwrap_or_else(|_| usb.device.clone());
            let by_id = links
                .iter()
                .find(|(_, t)| *t == real)
                .map(|(l, _)| l.clone());
            Adapter { usb, by_id }
        })
        .collect()
}

fn value(x: Option<f64>, unit: &str) -> String {
    x.map(|x| format!("{x:.1} {unit}"))
        .unwrap_or_else(|| "-".into())
}

impl Answer {
    /// One line: protocol, line settings, identity, status and readings.
    pub fn line(&self) -> String {
        let id = &self.identity;
        let who = [&id.manufacturer, &id.model, &id.firmware]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let r = &self.reading;
        let line = match self.check {
            Some(check) => format!(" at {} baud, {check}", self.baud),
            None if self.baud != DEFAULT_BAUD => format!(" at {} baud", self.baud),
            None => String::new(),
        };
        format!(
            "{}{}{} status {} input {} output {} load {} battery {} charge {}{}",
            self.protocol,
            line,
            if who.is_empty() {
                String::new()
            } else {
                format!(" ({who})")
            },
            r.status.join(" "),
            value(r.input_voltage_volts, "V"),
            value(r.output_voltage_volts, "V"),
            value(r.load_percent, "%"),
            value(r.battery_voltage_volts, "V"),
            value(r.battery_charge_percent, "%"),
            if r.battery_charge_estimated {
                " (estimated)"
            } else {
                ""
            },
        )
    }

    fn json(&self) -> Value {
        let (id, r) = (&self.identity, &self.reading);
        json!({
            "protocol": self.protocol,
            "baud": self.baud,
            "check": self.check,
            "manufacturer": id.manufacturer,
            "model": id.model,
            "firmware": id.firmware,
            "serial": id.serial_number,
            "status": r.status,
            "input_voltage_volts": r.input_voltage_volts,
            "output_voltage_volts": r.output_voltage_volts,
            "load_percent": r.load_percent,
            "battery_voltage_volts": r.battery_voltage_volts,
            "battery_charge_percent": r.battery_charge_percent,
            "battery_charge_estimated": r.battery_charge_estimated,
        })
    }
}

impl Adapter {
    /// "0403:6001 FTDI FT232R USB UART serial A12345".
    pub fn describe(&self) -> String {
        let u = &self.usb;
        let mut s = format!("{:04x}:{:04x}", u.vid, u.pid);
        for part in [&u.manufacturer, &u.product].into_iter().flatten() {
            s.push(' ');
            s.push_str(part);
        }
        if let Some(serial) = &u.serial {
            s.push_str(&format!(" serial {serial}"));
        }
        s
    }
}

impl PortReport {
    /// The human report: the adapter, then one line per protocol.
    pub fn text(&self) -> String {
        let mut out = format!("{}", self.port.display());
        if let Some(a) = &self.adapter {
            out.push_str(&format!(" ({}", a.describe()));
            if self.port != a.usb.device {
                out.push_str(&format!(", {}", a.usb.device.display()));
            }
            out.push(')');
        }
        out.push('\n');
        for a in &self.answers {
            out.push_str(&format!("  {}\n", a.line()));
        }
        if self.answers.is_empty() {
            out.push_str("  nothing answered\n");
        }
        for (protocol, why) in &self.silent {
            out.push_str(&format!("  {protocol}: {why}\n"));
        }
        out
    }

    /// The same as JSON, for scripts.
    pub fn json(&self) -> Value {
        json!({
            "port": self.port.display().to_string(),
            "adapter": self.adapter.as_ref().map(|a| json!({
                "device": a.usb.device.display().to_string(),
                "by_id": a.by_id.as_ref().map(|p| p.display().to_string()),
                "vendor_id": format!("{:04x}", a.usb.vid),
                "product_id": format!("{:04x}", a.usb.pid),
                "manufacturer": a.usb.manufacturer,
                "product": a.usb.product,
                "serial": a.usb.serial,
            })),
            "answered": self.answers.iter().map(Answer::json).collect::<Vec<_>>(),
            "silent": self.silent.iter().map(|(p, why)| json!({"protocol": p, "error": why})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn adapters_carry_vendor_product_and_their_by_id_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let usb = root.join("sys/devices/pci0000:00/usb1/1-1");
        let port = usb.join("1-1:1.0/ttyUSB0");
        std::fs::create_dir_all(&port).expect("mkdir");
        for (f, v) in [
            ("idVendor", "0403"),
            ("idProduct", "6001"),
            ("manufacturer", "FTDI"),
            ("product", "FT232R USB UART"),
            ("serial", "A10K"),
        ] {
            std::fs::write(usb.join(f), format!("{v}\n")).expect("write");
        }
        std::fs::create_dir_all(root.join("sys/class/tty/ttyUSB0")).expect("mkdir");
        symlink(&port, root.join("sys/class/tty/ttyUSB0/device")).expect("symlink");
        std::fs::create_dir_all(root.join("dev/serial/by-id")).expect("mkdir");
        std::fs::write(root.join("dev/ttyUSB0"), "").expect("touch");
        let link = root.join("dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K-if00-port0");
        symlink("../../ttyUSB0", &link).expect("symlink");

        let found = adapters(&SysRoot::at(root));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].by_id.as_ref(), Some(&link));
        assert_eq!(
            found[0].describe(),
            "0403:6001 FTDI FT232R USB UART serial A10K"
        );
        let report = PortReport {
            port: link.clone(),
            adapter: Some(found[0].clone()),
            answers: Vec::new(),
            silent: vec![("megatec", "no reply".into())],
        };
        let text = report.text();
        assert!(
            text.contains("usb-FTDI_FT232R_USB_UART_A10K-if00-port0 (0403:6001 FTDI"),
            "{text}"
        );
        assert!(text.contains("nothing answered"), "{text}");
        assert_eq!(report.json()["adapter"]["product"], "FT232R USB UART");
    }
}
