//! The `redis-master-proxy` command: parse the CLI, set up logging, load the config, run the
//! app until a signal, exit.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use redis_master_proxy::config::{Config, Dur, HostPort, Mode, Overrides, Placement, RelayMode};
use redis_master_proxy::data::workers::{self, Workers};
use redis_master_proxy::{app, metrics as m, shutdown};

#[derive(Parser, Debug)]
#[command(
    name = "redis-master-proxy",
    version,
    about = "Routes every client to the one writable Redis master"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The configuration a command runs with: a file and the flags that override it.
#[derive(Args, Debug)]
struct Settings {
    /// TOML config file (see config/example.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Client listen address (default 127.0.0.1:16379).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin HTTP address for /metrics, /livez, /readyz, /status (default 127.0.0.1:8404).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// A backend `host:port`; repeat for each. Replaces the file's list.
    #[arg(long = "backend")]
    backends: Vec<HostPort>,
    /// Health check interval (`health.interval`), e.g. `1s`, `500ms`.
    #[arg(long)]
    interval: Option<Dur>,
    /// Bound on one check (`health.timeout`), shorter than the interval, e.g. `150ms`.
    #[arg(long)]
    timeout: Option<Dur>,
    /// Relay mode: auto, splice or copy.
    #[arg(long)]
    relay: Option<RelayMode>,
    /// Client listener mode: relay (one backend connection per client) or multiplex.
    #[arg(long)]
    mode: Option<Mode>,
    /// Data-path threads (0 = one per CPU; 1 = everything on one thread; at most 1024).
    #[arg(long)]
    threads: Option<usize>,
    /// Which data-path thread a client runs on: host (a client host's connections share one,
    /// keeping their order) or connection (the least loaded).
    #[arg(long)]
    placement: Option<Placement>,
}

impl Settings {
    fn split(self) -> (Option<PathBuf>, Overrides) {
        let o = Overrides {
            listen: self.listen,
            admin: self.admin,
            backends: self.backends,
            interval: self.interval,
            timeout: self.timeout,
            relay: self.relay,
            mode: self.mode,
            threads: self.threads,
            placement: self.placement,
        };
        (self.config, o)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy. Flags override the config file; `--backend` alone is a complete setup.
    Run {
        #[command(flatten)]
        settings: Settings,
        /// Log level when RUST_LOG is unset: error, warning (warn), notice (info), verbose
        /// (debug), trace, off. An unknown level is refused.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Validate a config file (and the same flags as `run`, checked the same way) and print
    /// the effective configuration, secrets shown as where they are read from.
    Check {
        #[command(flatten)]
        settings: Settings,
    },
    /// Convert a HAProxy configuration (TCP mode, in front of Redis) into this proxy's TOML:
    /// the TOML on stdout, what could not be carried over on stderr.
    ImportHaproxy {
        /// The haproxy.cfg to read.
        file: PathBuf,
    },
    /// Print the running proxy's backends and master as a table (from its admin /status).
    Status {
        /// The proxy's admin address.
        #[arg(long, default_value = redis_master_proxy::config::DEFAULT_ADMIN)]
        admin: String,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes (README, "Command line"): 0 after a clean shutdown or a successful command;
/// 1 when `run` cannot start (an address cannot be bound, a thread or runtime cannot be
/// started) or `status` cannot reach the proxy; 2 for an invalid configuration or command line.
const EXIT_START: ExitCode = ExitCode::FAILURE;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { settings } => {
            let (config, overrides) = settings.split();
            match Config::load_with(config.as_deref(), &overrides) {
                Ok(cfg) => {
                    let source = config
                        .as_ref()
                        .map_or("the command line".to_string(), |p| p.display().to_string());
                    println!("# {source}: valid. Effective configuration:");
                    print!("{}", cfg.to_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::ImportHaproxy { file } => {
            let text = match std::fs::read(&file) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    eprintln!("error: {}: cannot read: {e}", file.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match redis_master_proxy::tools::haproxy::import(&text) {
                Ok(imported) => {
                    for w in &imported.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", imported.toml);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Status { admin, json } => {
            match redis_master_proxy::tools::status_cli::fetch_status(&admin) {
                Ok(body) if json => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok(body) => match redis_master_proxy::tools::status_cli::status_table(&body) {
                    Ok(table) => {
                        print!("{table}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("error: cannot read status from {admin}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            settings,
            log_level,
        } => {
            if let Err(e) = init_logging(&log_level) {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let (config, overrides) = settings.split();
            let cfg = match Config::load_with(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // Sessions run on the data-path workers (see `workers`), started before the main
            // runtime so a thread the system refuses ends the start cleanly, with nothing
            // bound and nothing announced.
            let workers = match Workers::start(workers::count_for(cfg.threads), cfg.placement) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!(
                        "error: key `threads`: {e} (lower `threads`, or raise the process \
                         limit, `ulimit -u`)"
                    );
                    return EXIT_START;
                }
            };
            // The control plane, the accept loop and the admin listener: one thread.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return EXIT_START;
                }
            };
            rt.block_on(run(cfg, workers, config, overrides))
        }
    }
}

fn init_logging(level: &str) -> Result<(), String> {
    let env = std::env::var("RUST_LOG").ok();
    let filter = redis_master_proxy::logging::filter(level, env.as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

async fn run(
    cfg: Config,
    workers: Workers,
    path: Option<PathBuf>,
    overrides: Overrides,
) -> ExitCode {
    raise_descriptor_limit(cfg.max_connections);
    let client = match redis_master_proxy::data::listener::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {} (key `listen`): {e}", cfg.listen);
            return EXIT_START;
        }
    };
    let admin = match redis_master_proxy::data::listener::bind(cfg.admin) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {} (key `admin`): {e}", cfg.admin);
            return EXIT_START;
        }
    };
    let sentinel_listen = cfg.sentinel.as_ref().and_then(|s| s.listen);
    let sentinel = match sentinel_listen.map(redis_master_proxy::data::listener::bind) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!(
                "error: cannot listen on {} (key `sentinel.listen`): {e}",
                sentinel_listen.map(|a| a.to_string()).unwrap_or_default()
            );
            return EXIT_START;
        }
    };
    let (client_addr, admin_addr) = match (client.local_addr(), admin.local_addr()) {
        (Ok(c), Ok(a)) => (c, a),
        _ => return EXIT_START,
    };
    let sentinel_addr = match sentinel.as_ref().map(|l| l.local_addr()) {
        None => String::new(),
        Some(Ok(a)) => format!(" sentinel={a}"),
        Some(Err(_)) => return EXIT_START,
    };
    let mut signals = match shutdown::Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return EXIT_START;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            match signals.next().await {
                shutdown::Request::Shutdown => {
                    let _ = tx.send(app::Event::Shutdown).await;
                    return;
                }
                shutdown::Request::Reload => {
                    let Some(p) = &path else {
                        tracing::warn!("SIGHUP ignored: the proxy was started without --config");
                        continue;
                    };
                    match Config::load_with(Some(p), &overrides) {
                        Ok(c) => {
                            let _ = tx.send(app::Event::Reload(Box::new(c))).await;
                        }
                        Err(e) => {
                            metrics::counter!(m::CONFIG_RELOADS, "result" => "error").increment(1);
                            tracing::error!(error = %e, "reload refused: the new configuration is invalid; the running one stays");
                        }
                    }
                }
            }
        }
    });
    tracing::info!(
        threads = workers.len(),
        placement = ?cfg.placement,
        "data path started"
    );
    // Everything is started: the accept loop runs as soon as `app::run` first yields.
    // One machine-readable line on stdout, so scripts and tests that asked for port 0 learn
    // the ports; everything else is logged on stderr.
    println!("listening client={client_addr} admin={admin_addr}{sentinel_addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(
        listen = %client_addr,
        admin = %admin_addr,
        backends = ?cfg.backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        relay = ?cfg.relay,
        "redis-master-proxy started"
    );

    let listeners = app::Listeners {
        client,
        admin,
        sentinel,
    };
    let report = app::run_with(cfg, listeners, workers, rx).await;
    if report.sessions_left > 0 {
        tracing::warn!(
            sessions = report.sessions_left,
            "exiting with sessions still open after the grace period"
        );
    }
    ExitCode::SUCCESS
}

/// Raises the soft descriptor limit to the hard one (a session needs two descriptors: client and
/// master) and warns when even that cannot hold `max_connections` sessions beside the reserve
/// (admin connections, checks, listeners). The default `max_connections` always fits.
fn raise_descriptor_limit(max_connections: usize) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let needed = max_connections as u64 * 2 + redis_master_proxy::config::descriptor_reserve(limit);
    if limit > 0 && limit < needed {
        tracing::warn!(
            limit,
            needed,
            max_connections,
            "the descriptor limit cannot hold max_connections sessions; accept will back off at the limit (raise `ulimit -n` or lower max_connections)"
        );
    }
}
