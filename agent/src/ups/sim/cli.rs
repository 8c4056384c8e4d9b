//! `nodewarden-agent ups simulate` and `ups control`: run a simulated UPS
//! on a pseudo-terminal for demos, fire drills and NUT comparisons, and
//! script a running one. Built only with the `simulator` feature.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::ups::gpser::CheckKind;
use crate::ups::sim::gpser::GpserResponder;
use crate::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use crate::ups::sim::{Responder, SimState, SimUps};

/// The simulator's `ups` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SimCli {
    /// Send one command to a running simulation's control socket
    /// ("mains off", "mains on", "load 60", "charge 30", "silent on", "status").
    Control {
        /// The control socket (PATH.ctl of `ups simulate`).
        socket: PathBuf,
        /// The command words.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Run a simulated UPS on a pseudo-terminal until interrupted.
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

/// Runs a simulator subcommand (blocking).
pub fn run(cmd: SimCli) -> ExitCode {
    match cmd {
        SimCli::Control { socket, command } => control(&socket, &command.join(" ")),
        SimCli::Simulate {
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
