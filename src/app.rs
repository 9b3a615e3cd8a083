//! Wiring: starts the control plane, the data path and the admin listener on listeners the
//! caller bound, and runs the shutdown sequence.
//!
//! Shutdown is a sequence: stop accepting → `/readyz` 503 → withdraw the route, which drains
//! every session the same way a master change does → wait for sessions up to `shutdown_grace`
//! → stop the admin listener → return.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::control::sentinel;
use crate::control::sentinel_route;
use crate::control::Control;
use crate::data::listener::{self, DataPath, Settings};
use crate::data::workers::Workers;
use crate::metrics as m;
use crate::routing::{DrainMode, RouteTable};
use crate::status::Status;

/// What the process asks of a running app.
#[derive(Debug)]
pub enum Event {
    /// Begin the shutdown sequence.
    Shutdown,
    /// Apply a new, already validated configuration.
    Reload(Box<Config>),
}

/// How the shutdown went.
#[derive(Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions still open when the grace period ended (closed by the exit).
    pub sessions_left: usize,
}

fn settings(cfg: &Config) -> Settings {
    Settings {
        relay: cfg.relay,
        mode: cfg.mode,
        connect_timeout: cfg.connect_timeout.0,
        drain_timeout: cfg.drain_timeout.0,
        wait_for_master: cfg.wait_for_master.0,
        max_connections: cfg.max_connections,
    }
}

/// The sentinel listener always relays: `mode` is about the master's clients.
fn sentinel_settings(cfg: &Config) -> Settings {
    Settings {
        mode: crate::config::Mode::Relay,
        ..settings(cfg)
    }
}

/// The listeners the caller bound.
pub struct Listeners {
    /// Clients of the master route (`listen`).
    pub client: TcpListener,
    /// `/metrics`, `/livez`, `/readyz`, `/status` (`admin`).
    pub admin: TcpListener,
    /// Clients relayed to a sentinel (`sentinel.listen`), when configured.
    pub sentinel: Option<TcpListener>,
}

/// Runs the proxy until an [`Event::Shutdown`] arrives (or the sender is dropped). Sessions
/// run on `workers` (see [`crate::data::workers`]); the control plane, the accept loop and the admin
/// listener run on the caller's runtime.
pub async fn run(
    cfg: Config,
    client: TcpListener,
    admin_listener: TcpListener,
    workers: Workers,
    events: mpsc::Receiver<Event>,
) -> ShutdownReport {
    let listeners = Listeners {
        client,
        admin: admin_listener,
        sentinel: None,
    };
    run_with(cfg, listeners, workers, events).await
}

/// [`run`] with every listener, the sentinel listener included.
pub async fn run_with(
    cfg: Config,
    listeners: Listeners,
    workers: Workers,
    mut events: mpsc::Receiver<Event>,
) -> ShutdownReport {
    let Listeners {
        client,
        admin: admin_listener,
        sentinel: sentinel_listener,
    } = listeners;
    let prometheus = m::install();
    let mut cfg = Arc::new(cfg);
    let table = Arc::new(RouteTable::default());
    let status = Arc::new(ArcSwap::from_pointee(Status::default()));
    let data = Arc::new(DataPath {
        table: table.clone(),
        settings: ArcSwap::from_pointee(settings(&cfg)),
        limit: Arc::new(Semaphore::new(cfg.max_connections)),
        active: AtomicUsize::new(0),
        sessions: TaskTracker::new(),
        workers: Arc::new(workers),
    });
    // The sentinel listener: the same accept loop and relay on its own route table; its
    // sessions count against the same max_connections (they hold descriptors alike).
    let sentinel_data = sentinel_listener.as_ref().map(|_| {
        Arc::new(DataPath {
            table: Arc::new(RouteTable::default()),
            settings: ArcSwap::from_pointee(sentinel_settings(&cfg)),
            limit: data.limit.clone(),
            active: AtomicUsize::new(0),
            sessions: TaskTracker::new(),
            workers: data.workers.clone(),
        })
    });
    let sentinel_status = Arc::new(ArcSwap::from_pointee(sentinel_route::Status::default()));
    let mut sentinel_checks =
        SentinelChecks::start(&cfg, sentinel_data.as_deref(), &sentinel_status);
    metrics::gauge!(m::HAS_MASTER).set(0.0);
    metrics::gauge!(m::CLIENT_MAX).set(cfg.max_connections as f64);

    let shutting_down = CancellationToken::new();
    let stop_control = CancellationToken::new();
    let stop_accept = CancellationToken::new();
    let stop_admin = CancellationToken::new();

    let (reload_tx, reload_rx) = mpsc::channel::<Arc<Config>>(4);
    let control = Control::new(cfg.clone(), table.clone(), status.clone());
    let (events_tx, events_rx) = mpsc::channel::<sentinel::Resolved>(64);
    let links = sentinel::Links::default();
    let mut sentinels = Subscriptions::start(&cfg, &events_tx, &links);
    let control_task = tokio::spawn(control.run(stop_control.clone(), reload_rx, events_rx));
    let accept_task = tokio::spawn(listener::accept_loop(
        client,
        data.clone(),
        stop_accept.clone(),
    ));
    let sentinel_addr = sentinel_listener.as_ref().and_then(|l| l.local_addr().ok());
    let sentinel_accept_task = match (sentinel_listener, &sentinel_data) {
        (Some(l), Some(dp)) => Some(tokio::spawn(listener::accept_loop(
            l,
            dp.clone(),
            stop_accept.clone(),
        ))),
        _ => None,
    };
    let admin_state = Arc::new(AdminState {
        data: data.clone(),
        status,
        prometheus,
        shutting_down: shutting_down.clone(),
        sentinel_links: links.clone(),
        sentinel_listener: sentinel_data.as_ref().map(|dp| admin::SentinelListener {
            listen: sentinel_addr,
            data: dp.clone(),
            status: sentinel_status.clone(),
        }),
    });
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        stop_admin.clone(),
    ));

    while let Some(Event::Reload(new)) = events.recv().await {
        let new = Arc::new(*new);
        let sentinel_listen = |c: &Config| c.sentinel.as_ref().and_then(|s| s.listen);
        if new.listen != cfg.listen
            || new.admin != cfg.admin
            || new.threads != cfg.threads
            || new.placement != cfg.placement
            || sentinel_listen(&new) != sentinel_listen(&cfg)
        {
            tracing::warn!(
                "listen, admin, sentinel.listen, threads and placement change only at a restart; \
                 keeping the current ones"
            );
        }
        data.settings.store(Arc::new(settings(&new)));
        if let Some(dp) = &sentinel_data {
            dp.settings.store(Arc::new(sentinel_settings(&new)));
        }
        let (old_max, new_max) = (cfg.max_connections, new.max_connections);
        if new_max > old_max {
            data.limit.add_permits(new_max - old_max);
        } else if new_max < old_max {
            data.limit.forget_permits(old_max - new_max);
        }
        metrics::gauge!(m::CLIENT_MAX).set(new_max as f64);
        if new.sentinel != cfg.sentinel {
            sentinels.stop().await;
            sentinels = Subscriptions::start(&new, &events_tx, &links);
            sentinel_checks.stop().await;
            sentinel_checks =
                SentinelChecks::start(&new, sentinel_data.as_deref(), &sentinel_status);
        }
        if reload_tx.send(new.clone()).await.is_err() {
            break;
        }
        metrics::counter!(m::CONFIG_RELOADS, "result" => "ok").increment(1);
        tracing::info!(backends = new.backends.len(), "configuration reloaded");
        cfg = new;
    }

    tracing::info!("shutting down: not ready, no longer accepting, draining sessions");
    shutting_down.cancel();
    stop_accept.cancel();
    let _ = accept_task.await;
    if let Some(t) = sentinel_accept_task {
        let _ = t.await;
    }
    stop_control.cancel();
    let _ = control_task.await;
    sentinels.stop().await;
    sentinel_checks.stop().await;
    table.publish(None, DrainMode::Graceful);
    data.sessions.close();
    if let Some(dp) = &sentinel_data {
        dp.table.publish(None, DrainMode::Graceful);
        dp.sessions.close();
    }
    let grace = cfg.shutdown_grace.0;
    let all_sessions = async {
        data.sessions.wait().await;
        if let Some(dp) = &sentinel_data {
            dp.sessions.wait().await;
        }
    };
    if tokio::time::timeout(grace, all_sessions).await.is_err() {
        tracing::warn!(grace = ?grace, "shutdown grace period over; closing the remaining sessions");
    }
    let sessions_left =
        data.sessions.len() + sentinel_data.as_ref().map_or(0, |dp| dp.sessions.len());
    data.workers.stop().await;
    stop_admin.cancel();
    let _ = admin_task.await;
    tracing::info!(sessions_left, "stopped");
    ShutdownReport { sessions_left }
}

/// The sentinel listener's checks ([`sentinel_route::run`]), restarted when a reload changes
/// `[sentinel]`; without a sentinel listener, or without `[sentinel]` after a reload, nothing
/// runs and the sentinel route is withdrawn.
struct SentinelChecks {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SentinelChecks {
    fn start(
        cfg: &Config,
        dp: Option<&DataPath>,
        status: &Arc<ArcSwap<sentinel_route::Status>>,
    ) -> SentinelChecks {
        let stop = CancellationToken::new();
        let task = match (dp, &cfg.sentinel) {
            (Some(dp), Some(sc)) => Some(tokio::spawn(sentinel_route::run(
                sc.clone(),
                dp.table.clone(),
                status.clone(),
                stop.clone(),
            ))),
            (Some(dp), None) => {
                dp.table.publish(None, DrainMode::Immediate);
                status.store(Arc::new(sentinel_route::Status::default()));
                None
            }
            _ => None,
        };
        SentinelChecks { stop, task }
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The event subscriptions to the configured sentinels, restarted when a reload changes them.
struct Subscriptions {
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl Subscriptions {
    fn start(
        cfg: &Config,
        tx: &mpsc::Sender<sentinel::Resolved>,
        links: &sentinel::Links,
    ) -> Subscriptions {
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        links.reset(cfg.sentinel.as_ref().map_or(&[], |s| &s.addresses));
        if let Some(sc) = &cfg.sentinel {
            for addr in &sc.addresses {
                tasks.spawn(sentinel::subscribe_loop(
                    addr.clone(),
                    sc.auth.clone(),
                    sc.master_name.clone(),
                    cfg.connect_timeout.0,
                    tx.clone(),
                    links.clone(),
                    stop.clone(),
                ));
            }
        }
        Subscriptions { stop, tasks }
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
