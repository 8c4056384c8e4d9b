//! `nodewarden`: the collector daemon (`nodewarden serve`) and the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use nodewarden::config::{self, CollectorConfig};
use nodewarden::pki::{self, PkiPaths};

/// sysexits EX_CONFIG: systemd's RestartPreventExitStatus stops a crash loop on a bad config.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "nodewarden",
    version,
    about = "nodewarden: cluster health and power-loss orchestration for small k3s clusters"
)]
struct Cli {
    #[command(flatten)]
    query: nodewarden::cli::QueryOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector daemon.
    Serve {
        /// Config file.
        #[arg(long, short, env = "NODEWARDEN_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Data directory (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Agent link address (overrides the config), e.g. 0.0.0.0:7150.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Admin socket (overrides the config).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
        /// Prometheus address (overrides the config); "" disables.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Check a config file and exit (0: valid; 78: invalid, with file, line and key).
    CheckConfig {
        #[arg(default_value = config::DEFAULT_PATH)]
        path: PathBuf,
    },
    /// Create the CA, the collector's certificate and a first join token.
    Init {
        #[arg(long, short, env = "NODEWARDEN_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Data directory (overrides the config); the PKI goes in <data-dir>/pki.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Another name or address agents will dial (repeatable); the
        /// hostname, /etc/hosts FQDNs and every interface address are in already.
        #[arg(long)]
        san: Vec<String>,
        /// Replace an existing CA: every node must join again.
        #[arg(long)]
        force: bool,
    },
    /// The collector's certificate.
    Cert {
        #[command(subcommand)]
        cmd: CertCommand,
    },
    /// Join tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        cmd: nodewarden::cli::trust::TokenCommand,
    },
    /// The web status page: make its password line.
    Web {
        #[command(subcommand)]
        cmd: WebCommand,
    },
    #[command(flatten)]
    Query(nodewarden::cli::QueryCommand),
    /// Print shell completions.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per subcommand.
    #[command(hide = true)]
    Manpage {
        /// Write every page (`nodewarden.1`, `nodewarden-<subcommand>.1`, ...) into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WebCommand {
    /// Read a password from standard input (one line) and print the `[web]`
    /// lines to paste into collector.toml; the password itself is not stored.
    HashPassword {
        /// The login name.
        #[arg(long, default_value = "admin")]
        user: String,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Re-issue the collector's certificate from the same CA (nodes keep
    /// working), e.g. to add a name agents dial; restart the collector after.
    Reissue {
        #[arg(long, short, env = "NODEWARDEN_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Another name or address (repeatable), besides the detected ones.
        #[arg(long)]
        san: Vec<String>,
    },
}

fn pki_paths(path: &std::path::Path, data_dir: Option<PathBuf>) -> Result<PkiPaths, ExitCode> {
    let explicit = path.as_os_str() != config::DEFAULT_PATH;
    let mut config = match CollectorConfig::load(path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nodewarden: {e}");
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    Ok(PkiPaths::of_data_dir(&config.data_dir))
}

fn init(
    path: &std::path::Path,
    data_dir: Option<PathBuf>,
    san: &[String],
    force: bool,
) -> ExitCode {
    let paths = match pki_paths(path, data_dir) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let names = pki::default_server_names(san);
    match pki::init(&paths, &names, force) {
        Ok(report) => {
            pki::files::hand_to_data_dir_owner(&paths);
            println!(
                "CA created in {} (sha256 {})",
                paths.dir.display(),
                report.ca_hash
            );
            println!(
                "collector certificate names: {}",
                report.server_names.join(", ")
            );
            println!(
                "join token (24 h, any number of nodes; `nodewarden token create` makes more):"
            );
            println!("{}", report.token);
            println!("on each node: nodewarden-agent join <one-of-the-names-above>:7150 <token>");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nodewarden: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `nodewarden cert reissue`.
fn reissue(path: &std::path::Path, data_dir: Option<PathBuf>, san: &[String]) -> ExitCode {
    let paths = match pki_paths(path, data_dir) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let names = pki::default_server_names(san);
    match pki::reissue_server(&paths, &names) {
        Ok(()) => {
            pki::files::hand_to_data_dir_owner(&paths);
            println!("collector certificate re-issued for: {}", names.join(", "));
            println!("restart the collector to use it (systemctl restart nodewarden)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nodewarden: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The single-threaded runtime a CLI command runs on.
fn client_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("nodewarden: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            config,
            data_dir,
            san,
            force,
        } => init(&config, data_dir, &san, force),
        Command::Cert {
            cmd:
                CertCommand::Reissue {
                    config,
                    data_dir,
                    san,
                },
        } => reissue(&config, data_dir, &san),
        Command::Token { cmd } => match client_runtime() {
            Ok(runtime) => runtime.block_on(nodewarden::cli::trust::run(
                nodewarden::cli::trust::TrustCommand::Token(cmd),
                &cli.query,
            )),
            Err(code) => code,
        },
        Command::Web {
            cmd: WebCommand::HashPassword { user },
        } => hash_password(&user),
        Command::Query(q) => match client_runtime() {
            Ok(runtime) => runtime.block_on(nodewarden::cli::run(q, cli.query)),
            Err(code) => code,
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "nodewarden",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Manpage { dir } => {
            // One page per subcommand (`man nodewarden-drill`) for the packages.
            let written = match dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("nodewarden: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { path } => match CollectorConfig::load(&path, true) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nodewarden: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve {
            config: path,
            data_dir,
            listen,
            admin_socket,
            metrics_listen,
        } => {
            let explicit = path.as_os_str() != config::DEFAULT_PATH;
            let mut config = match CollectorConfig::load(&path, explicit) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("nodewarden: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Some(d) = data_dir {
                config.data_dir = d;
            }
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(s) = admin_socket {
                config.admin_socket = s;
            }
            if let Some(m) = metrics_listen {
                config.metrics_listen = m;
            }
            if let Err(e) = config.validate(&path) {
                eprintln!("nodewarden: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            serve(config)
        }
    }
}

/// `nodewarden web hash-password`: stdin, not an argument, so the password
/// stays out of shell history and `ps`.
fn hash_password(user: &str) -> ExitCode {
    use nodewarden::server::web::auth::{DEFAULT_ITERATIONS, PasswordHash};
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("password (shown as typed; or pipe it in), then Enter:");
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("nodewarden: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() || user.is_empty() || user.contains(':') {
        eprintln!("nodewarden: need a non-empty password and a user name without ':'");
        return ExitCode::FAILURE;
    }
    let hash = PasswordHash::new(password, DEFAULT_ITERATIONS);
    println!("[web]\nuser = \"{user}\"\npassword_hash = \"{hash}\"");
    ExitCode::SUCCESS
}

fn serve(config: CollectorConfig) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NODEWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nodewarden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            nodewarden_common::signal::wait_for_stop().await;
            let _ = stop_tx.send(true);
        });
        match nodewarden::daemon::serve(config, stop_rx, None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("nodewarden: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
