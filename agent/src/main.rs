//! `nodewarden-agent`: one per node.

use std::path::PathBuf;
use std::process::ExitCode;

/// musl's allocator hands a mid-sized block's pages back to the kernel the
/// moment it is free, so every batch sent (TLS record, HTTP/2 and protobuf
/// buffers of a few KiB) cost mmap, munmap and page faults: a tenth of the
/// agent's CPU. dlmalloc keeps freed memory for reuse.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use clap::{CommandFactory, Parser, Subcommand};
use nodewarden_agent::config::{self, AgentConfig};
use nodewarden_agent::daemon;
use nodewarden_agent::sensors::Sensors;
use nodewarden_agent::sysroot::SysRoot;

/// sysexits EX_CONFIG: systemd's RestartPreventExitStatus stops a crash loop on a bad config.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "nodewarden-agent",
    version,
    about = "nodewarden node agent: reads this node and its UPS, streams to the collector"
)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "NODEWARDEN_AGENT_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Collector address (overrides the config), e.g. https://10.0.0.2:7150.
    #[arg(long)]
    collector: Option<String>,
    /// Node name (overrides the config; default the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Root for /proc, /sys and /dev (tests use fixture trees).
    #[arg(long)]
    sysroot: Option<PathBuf>,
    /// Sampling interval (overrides the config), e.g. 1s.
    #[arg(long, value_parser = nodewarden_common::units::parse_duration)]
    sample_interval: Option<std::time::Duration>,
    /// Longest a sample waits to be sent (overrides the config), e.g. 1s.
    #[arg(long, value_parser = nodewarden_common::units::parse_duration)]
    send_interval: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Join the collector: `nodewarden-agent join HOST[:PORT] TOKEN` (the token
    /// comes from `nodewarden init` or `nodewarden token create`).
    Join {
        /// The collector's address as this node reaches it; port 7150 by default.
        addr: String,
        /// The join token, NW1::<ca-hash>::<id>.<secret>.
        token: String,
        /// Node name to bind into the certificate (default: the config's, else the hostname).
        #[arg(long)]
        node_name: Option<String>,
        /// Where to keep the CA, certificate and key (default: the config's,
        /// else /var/lib/nodewarden-agent).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Check a config file and exit (0: valid; 78: invalid, with file, line and key).
    CheckConfig {
        /// Defaults to --config.
        path: Option<PathBuf>,
    },
    /// Take one sample of this node (or of a fixture tree) and print it.
    Sample {
        #[arg(long)]
        sysroot: Option<PathBuf>,
        /// Print JSON instead of the debug form.
        #[arg(long)]
        json: bool,
    },
    /// Find, read or simulate a UPS.
    Ups {
        #[command(subcommand)]
        cmd: nodewarden_agent::ups::cli::UpsCli,
    },
    /// Print shell completions.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per subcommand.
    #[command(hide = true)]
    Manpage {
        /// Write every page (`nodewarden-agent.1`, `nodewarden-agent-<subcommand>.1`, ...) into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn init_logging(level: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // `Targets` takes the directives people write ("info",
    // "nodewarden_agent::ups=debug,warn") without EnvFilter's regex engine,
    // which is a sizeable part of a small daemon's resident pages.
    let filter = std::env::var("NODEWARDEN_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .or_else(|| level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(filter)
        .init();
}

fn load_config(cli: &Cli) -> Result<AgentConfig, ExitCode> {
    let explicit = cli.config.as_os_str() != config::DEFAULT_PATH;
    let mut config = match AgentConfig::load(&cli.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nodewarden-agent: {e}");
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    let r = &cli.run;
    if let Some(c) = &r.collector {
        config.collector = c.clone();
    }
    if let Some(n) = &r.node_name {
        config.node_name = n.clone();
    }
    if let Some(s) = &r.sysroot {
        config.sysroot = s.clone();
    }
    if let Some(i) = r.sample_interval {
        config.sample_interval = i;
    }
    if let Some(i) = r.send_interval {
        config.send_interval = i;
    }
    if let Err(e) = config.validate(&cli.config) {
        eprintln!("nodewarden-agent: {e}");
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(config)
}

fn join(
    config_path: &std::path::Path,
    addr: &str,
    token: &str,
    node_name: Option<String>,
    state_dir: Option<PathBuf>,
) -> ExitCode {
    init_logging("warn");
    // The current file may be one join is about to fix (an http:// address),
    // so it is read leniently, and only for the node name and state dir.
    let text = std::fs::read_to_string(config_path).unwrap_or_default();
    let current: AgentConfig =
        nodewarden_common::config_error::parse_toml(config_path, &text).unwrap_or_default();
    let node = node_name.clone().unwrap_or_else(|| {
        if current.node_name.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        } else {
            current.node_name.clone()
        }
    });
    let dir = state_dir
        .clone()
        .unwrap_or_else(|| current.state_dir.clone());
    let identity = nodewarden_agent::trust::Identity::at(&dir);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nodewarden-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (url, info) =
        match runtime.block_on(nodewarden_agent::trust::join(addr, token, &node, &identity)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("nodewarden-agent: join failed: {e}");
                return ExitCode::FAILURE;
            }
        };
    let mut new_text = nodewarden_agent::trust::set_config_key(&text, "collector", &url);
    if let Some(n) = &node_name {
        new_text = nodewarden_agent::trust::set_config_key(&new_text, "node_name", n);
    }
    if let Some(d) = &state_dir {
        new_text = nodewarden_agent::trust::set_config_key(
            &new_text,
            "state_dir",
            &d.display().to_string(),
        );
    }
    if let Some(parent) = config_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(config_path, new_text) {
        eprintln!(
            "nodewarden-agent: joined, but cannot update {}: {e}; set collector = \"{url}\" there yourself",
            config_path.display()
        );
        return ExitCode::FAILURE;
    }
    nodewarden_agent::trust::hand_to_service_user(&identity);
    println!(
        "joined {url} as node `{}`; certificate in {} (renews itself); config {} updated",
        info.node,
        dir.display(),
        config_path.display()
    );
    println!("start or restart the agent: systemctl restart nodewarden-agent");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "nodewarden-agent",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::Manpage { dir }) => {
            // One page per subcommand (`man nodewarden-agent-join`) for the packages.
            let written = match dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("nodewarden-agent: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::CheckConfig { path }) => {
            let path = path.clone().unwrap_or_else(|| cli.config.clone());
            return match AgentConfig::load(&path, true) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("nodewarden-agent: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            };
        }
        Some(Command::Sample { sysroot, json }) => {
            let root = sysroot.clone().map_or_else(SysRoot::host, SysRoot::at);
            let mut sensors = Sensors::new(root);
            let sample = sensors.sample(1, nodewarden_common::clock::now_ms());
            if *json {
                match serde_json::to_string_pretty(&sample) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("nodewarden-agent: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{sample:#?}");
            }
            return ExitCode::SUCCESS;
        }
        Some(Command::Ups { cmd }) => {
            init_logging("warn");
            return nodewarden_agent::ups::cli::run(cmd.clone());
        }
        Some(Command::Join {
            addr,
            token,
            node_name,
            state_dir,
        }) => {
            return join(
                &cli.config,
                addr,
                token,
                node_name.clone(),
                state_dir.clone(),
            );
        }
        Some(Command::Run) | None => {}
    }

    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log_level);
    // One thread: the agent does little, and a small footprint is a feature.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nodewarden-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            nodewarden_common::signal::wait_for_stop().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        daemon::run(config, stop_rx).await;
    });
    ExitCode::SUCCESS
}
