//! `nodewarden-agent ups ...`: find out what answers on a serial port, and
//! (in builds with the `simulator` feature) run a simulated UPS for demos,
//! fire drills and NUT comparisons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::sysroot::SysRoot;
use crate::ups::megatec::{BatteryTuning, MegatecDriver};
use crate::ups::model::{UpsDriver, UpsError};
use crate::ups::serial::candidate_ports;
#[cfg(feature = "simulator")]
use crate::ups::sim::cli::{self as sim_cli, SimCli};

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
    // `simulate` and `control`.
    #[command(flatten)]
    Sim(SimCli),
}

/// Runs a UPS subcommand (blocking).
pub fn run(cmd: UpsCli) -> ExitCode {
    match cmd {
        UpsCli::Probe { port, baud } => probe(port, baud, &SysRoot::host()),
        UpsCli::Sim(cmd) => sim_cli::run(cmd),
    }
}

/// Stand-ins for the simulator's subcommands in a build without it, so
/// `ups simulate` says what is missing instead of "unrecognized subcommand".
#[cfg(not(feature = "simulator"))]
mod sim_cli {
    use std::process::ExitCode;

    /// Hidden `simulate` and `control` that accept any arguments.
    #[derive(Debug, Clone, clap::Subcommand)]
    pub enum SimCli {
        #[command(hide = true)]
        Control {
            #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
            args: Vec<String>,
        },
        #[command(hide = true)]
        Simulate {
            #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
            args: Vec<String>,
        },
    }

    /// Says that this build has no simulator.
    pub fn run(cmd: SimCli) -> ExitCode {
        let name = match cmd {
            SimCli::Control { .. } => "control",
            SimCli::Simulate { .. } => "simulate",
        };
        eprintln!(
            "nodewarden-agent: this build has no UPS simulator (the packaged agent leaves it out), so no `ups {name}`; build one with `cargo build -p nodewarden-agent --features simulator`"
        );
        ExitCode::FAILURE
    }
}
#[cfg(not(feature = "simulator"))]
use sim_cli::SimCli;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ups::sim::SimUps;
    use crate::ups::sim::megatec::MegatecResponder;

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

    #[cfg(not(feature = "simulator"))]
    #[test]
    fn without_the_simulator_simulate_is_known_but_fails() {
        use clap::Parser;
        #[derive(Parser)]
        struct Top {
            #[command(subcommand)]
            cmd: UpsCli,
        }
        for args in [
            &[
                "ups",
                "simulate",
                "--protocol",
                "megatec",
                "--path",
                "/tmp/u",
            ][..],
            &["ups", "control", "/tmp/u.ctl", "mains", "off"][..],
        ] {
            let top = Top::try_parse_from(args).expect("parses");
            assert_eq!(run(top.cmd), ExitCode::FAILURE);
        }
    }
}
