//! `nodewarden-agent ups ...`: find out what answers on a serial port, and run
//! a simulated UPS for demos, fire drills and NUT comparisons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::sysroot::SysRoot;
use crate::ups::gpser::CheckKind;
use crate::ups::megatec::{BatteryTuning, MegatecDriver};
use crate::ups::model::{UpsDriver, UpsError};
use crate::ups::serial::candidate_ports;
use crate::ups::sim::gpser::GpserResponder;
use crate::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use crate::ups::sim::{Responder, SimState, SimUps};

/// UPS subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum UpsCli {
    /// Try the known protocols on PORT (default: every USB serial port) and
    /// print what answered.
    Probe {
        /// Serial device, e.g. /dev/serial/by-id/usb-... or /dev/ttyUSB0.
        port: Option<String>,
        /// Serial speed (default: each protocol's own).
        #[arg(long)]
        baud: Option<u32>,
    },
    /// Run a simulated UPS on a pseudo-terminal until interrupted.
    /// Send one command to a running simulation's control socket
    /// ("mains off", "mains on", "load 60", "charge 30", "silent on", "status").
    Control {
        /// The control socket (PATH.ctl of `ups simulate`).
        socket: PathBuf,
        /// The command words.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    Simulate {
        /// Protocol the simulated unit speaks.
        #[arg(long, default_value = "megatec")]
        protocol: String,
        /// Stable path linked to the pty (give it to NUT or nodewarden as the port).
        #[arg(long)]
        path: PathBuf,
        /// Control socket (default: PATH.ctl); see `ups::sim::control`.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Start on battery.
        #[arg(long)]
        on_battery: bool,
        /// Initial battery charge, percent.
        #[arg(long, default_value_t = 100.0)]
        charge: f64,
        /// Load, percent of rating.
        #[arg(long, default_value_t = 25.0)]
        load: f64,
        /// Runtime at full load with a full battery, seconds.
        #[arg(long, default_value_t = 300.0)]
        full_load_runtime: f64,
        /// Report battery voltage per cell, as some units do.
        #[arg(long)]
        per_cell: bool,
    },
}

/// Runs a UPS subcommand (blocking).
pub fn run(cmd: UpsCli) -> ExitCode {
    match cmd {
        UpsCli::Control { socket, command } => control(&socket, &command.join(" ")),
        UpsCli::Probe { port, baud } => probe(port, baud, &SysRoot::host()),
        UpsCli::Simulate {
            protocol,
            path,
            control,
            on_battery,
            charge,
            load,
            full_load_runtime,
            per_cell,
        } => {
            let state = SimState {
                mains: !on_battery,
                charge_percent: charge.clamp(0.0, 100.0),
                load_percent: load.clamp(0.0, 200.0),
                full_load_runtime_seconds: full_load_runtime.max(1.0),
                ..SimState::default()
            };
            let control = control.unwrap_or_else(|| {
                let mut p = path.clone().into_os_string();
                p.push(".ctl");
                PathBuf::from(p)
            });
            simulate(&protocol, &path, &control, state, per_cell)
        }
    }
}

fn probe(port: Option<String>, baud: Option<u32>, root: &SysRoot) -> ExitCode {
    let ports: Vec<PathBuf> = match port {
        Some(p) => vec![PathBuf::from(p)],
        None => candidate_ports(root),
    };
    if ports.is_empty() {
        eprintln!(
            "no USB serial ports found (looked in /dev/serial/by-id, /dev/ttyUSB*, /dev/ttyACM*); is the UPS plugged in?"
        );
        return ExitCode::FAILURE;
    }
    let mut answered = false;
    for p in &ports {
        match probe_megatec(p, baud) {
            Ok(line) => {
                answered = true;
                println!("{}: {line}", p.display());
            }
            Err(e @ UpsError::Open { .. }) => println!("{}: {e}", p.display()),
            Err(e) => println!("{}: nothing answered (megatec: {e})", p.display()),
        }
    }
    if answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn probe_megatec(port: &Path, baud: Option<u32>) -> Result<String, UpsError> {
    let mut d = MegatecDriver::open(port, baud, BatteryTuning::default())?;
    let r = d.poll()?;
    let id = d.identify()?;
    let who = [id.manufacturer, id.model, id.firmware]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let v = |x: Option<f64>, unit: &str| {
        x.map(|x| format!("{x:.1} {unit}"))
            .unwrap_or_else(|| "-".into())
    };
    Ok(format!(
        "megatec{} status {} input {} output {} load {} battery {} charge {}{}",
        if who.is_empty() {
            String::new()
        } else {
            format!(" ({who})")
        },
        r.status.join(" "),
        v(r.input_voltage_volts, "V"),
        v(r.output_voltage_volts, "V"),
        v(r.load_percent, "%"),
        v(r.battery_voltage_volts, "V"),
        v(r.battery_charge_percent, "%"),
        if r.battery_charge_estimated {
            " (estimated)"
        } else {
            ""
        },
    ))
}

fn responder(protocol: &str, per_cell: bool) -> Result<Box<dyn Responder>, String> {
    match protocol {
        "megatec" => Ok(Box::new(MegatecResponder::new(MegatecDialect {
            per_cell_battery: per_cell,
            ..MegatecDialect::default()
        }))),
        // The sum check: Debian 12's NUT 2.8.0 computes the Riello CRC wrongly
        // (fixed in 2.8.1), and the simulator should be readable by NUT too.
        "gpser" => Ok(Box::new(GpserResponder::new(CheckKind::Sum))),
        other => Err(format!("unknown protocol `{other}` (megatec or gpser)")),
    }
}

fn simulate(
    protocol: &str,
    path: &Path,
    control: &Path,
    state: SimState,
    per_cell: bool,
) -> ExitCode {
    let responder = match responder(protocol, per_cell) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sim = match SimUps::spawn_with(responder, path, state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the simulator at {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = sim.serve_control(control) {
        eprintln!("cannot listen on {}: {e}", control.display());
        return ExitCode::FAILURE;
    }
    println!(
        "simulated {protocol} UPS on {} linked at {}; control socket {}",
        sim.pty_path().display(),
        path.display(),
        control.display()
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    });
    drop(sim);
    ExitCode::SUCCESS
}

/// One line to a simulation's control socket; prints the answer.
fn control(socket: &Path, line: &str) -> ExitCode {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cannot connect to {}: {e}; is `nodewarden-agent ups simulate` running?",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = writeln!(stream, "{line}") {
        eprintln!("cannot send to {}: {e}", socket.display());
        return ExitCode::FAILURE;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut failed = false;
    for reply in BufReader::new(stream).lines().map_while(Result::ok) {
        failed |= reply.starts_with("error");
        println!("{reply}");
        if reply == "ok" || reply.starts_with("error") {
            break;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_what_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = SimUps::spawn(MegatecResponder::default(), &dir.path().join("ups")).expect("sim");
        let line = probe_megatec(sim.link(), None).expect("answers");
        assert!(
            line.starts_with("megatec (NODEWARDEN SIM-800 V1.0) status OL input 230.0 V"),
            "{line}"
        );
        assert!(line.contains("charge 100.0 % (estimated)"), "{line}");
        sim.set(|s| s.silent = true);
        let err = probe_megatec(sim.link(), None).unwrap_err().to_string();
        assert!(err.contains("no reply"), "{err}");
    }

    #[test]
    fn probe_without_ports_fails_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            probe(None, None, &SysRoot::at(dir.path())),
            ExitCode::FAILURE
        );
    }
}
