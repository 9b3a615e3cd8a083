//! The data path's front: accept client connections, bind each to the current route, connect to
//! the master and hand both sockets to the relay.
//!
//! The accept loop never ends on an error: `EMFILE`, `ENFILE`, `ENOBUFS` and friends are counted,
//! logged on the first occurrence, and retried after a backoff that doubles up to one second, so
//! a descriptor shortage neither spins a core nor stops the proxy. Connections beyond
//! `max_connections` get Redis's own `-ERR max number of clients reached` and are closed at
//! once, counted, and logged at most once per 10 s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Mode, RelayMode};
use crate::data::relay::{self, End};
use crate::data::workers::Workers;
use crate::metrics as m;
use crate::routing::{Route, RouteTable};

/// Settings of the data path, fixed for the life of a session.
#[derive(Clone, Debug)]
pub struct Settings {
    pub relay: RelayMode,
    /// Relay each client 1:1, or multiplex (`crate::data::mux`).
    pub mode: Mode,
    pub connect_timeout: Duration,
    pub drain_timeout: Duration,
    pub wait_for_master: Duration,
    /// The size of [`DataPath::limit`], for the refusal log.
    pub max_connections: usize,
}

/// What the accept loop and its sessions share.
pub struct DataPath {
    pub table: Arc<RouteTable>,
    pub settings: arc_swap::ArcSwap<Settings>,
    /// Permits for `max_connections` sessions.
    pub limit: Arc<Semaphore>,
    /// Open client sessions (for `/status`).
    pub active: AtomicUsize,
    /// Every session task, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// The threads sessions run on (shared by the master and sentinel listeners).
    pub workers: Arc<Workers>,
}

/// Listen backlog: after a failover every client reconnects at once, and a short queue (the
/// standard library's 128) turns that burst into SYN drops and 1 s retransmits. The kernel caps
/// it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// Binds the client (or admin) listener with [`BACKLOG`] and `SO_REUSEADDR`. Call inside the
/// runtime.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// What Redis answers a client over its `maxclients` before closing it.
pub const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// At most one log line about refused clients per this period: a connection storm at the limit
/// must not turn into a log storm.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Logs refusals over `max_connections` at a bounded rate: the first at once, then one line per
/// [`REFUSAL_LOG_PERIOD`] with the count since the last line.
#[derive(Default)]
struct RefusalLog {
    last: Option<tokio::time::Instant>,
    /// Refusals not yet reported.
    pending: u64,
}

impl RefusalLog {
    fn refused(&mut self, max_connections: usize) {
        self.pending += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_PERIOD)
        {
            return;
        }
        tracing::warn!(
            refused = self.pending,
            max_connections,
            "clients refused: max_connections sessions are open (at most one line per 10s; \
             connections_refused_total{{reason=\"over_limit\"}} counts them all)"
        );
        self.pending = 0;
        self.last = Some(now);
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts until `stop` fires. Sessions keep running; wait on `dp.sessions` for them.
pub async fn accept_loop(listener: TcpListener, dp: Arc<DataPath>, stop: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    let mut refusals = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if failing {
                    tracing::info!("accepting connections again");
                    failing = false;
                }
                backoff = BACKOFF_MIN;
                metrics::counter!(m::CLIENT_TOTAL).increment(1);
                match dp.limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let dp2 = dp.clone();
                        let stop = stop.clone();
                        dp.workers
                            .spawn(&dp.sessions, stream, move |stream| async move {
                                serve(stream, &dp2, stop).await;
                                drop(permit);
                            });
                    }
                    Err(_) => {
                        metrics::counter!(m::REFUSED, "reason" => "over_limit").increment(1);
                        // Redis's own words, so clients log a reason instead of a bare EOF. The
                        // send buffer of a fresh socket is empty: the write never waits.
                        let _ = stream.try_write(MAX_CLIENTS_REACHED);
                        drop(stream);
                        refusals.refused(dp.settings.load().max_connections);
                    }
                }
            }
            Err(e) => {
                metrics::counter!(m::ACCEPT_ERRORS).increment(1);
                if !failing {
                    tracing::warn!(error = %e, "accept failed; backing off and retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Decrements the active-session gauge however the session ends.
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::CLIENT_ACTIVE).decrement(1.0);
    }
}

/// One client session from accept to close.
async fn serve(client: TcpStream, dp: &Arc<DataPath>, stop: CancellationToken) {
    dp.active.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::CLIENT_ACTIVE).increment(1.0);
    let _guard = ActiveGuard(&dp.active);
    let _ = client.set_nodelay(true);
    let settings = dp.settings.load_full();
    if settings.mode == Mode::Multiplex {
        return crate::data::mux::serve(client, dp, &settings, stop).await;
    }
    let Some((route, backend)) = connect(dp, &settings, &stop).await else {
        return;
    };
    relay_session(client, &route, backend, &settings).await;
}

/// Relays a connected session until it ends, and counts how it ended.
pub(crate) async fn relay_session(
    mut client: TcpStream,
    route: &Route,
    mut backend: TcpStream,
    settings: &Settings,
) {
    let bytes = relay::Bytes::default();
    let end = relay::relay(
        &mut client,
        &mut backend,
        route,
        settings.relay,
        settings.drain_timeout,
        &bytes,
    )
    .await;
    metrics::counter!(m::RELAY_BYTES, "direction" => "client_to_backend")
        .increment(bytes.to_backend.load(Ordering::Relaxed));
    metrics::counter!(m::RELAY_BYTES, "direction" => "backend_to_client")
        .increment(bytes.to_client.load(Ordering::Relaxed));
    match end {
        End::Drained => {
            metrics::counter!(m::DRAINED).increment(1);
            tracing::debug!(backend = %route.backend, epoch = route.epoch, "session drained after a master change");
        }
        End::Error => tracing::debug!(backend = %route.backend, "session ended by a socket error"),
        End::ClientClosed | End::BackendClosed => {}
    }
}

/// Finds the route and connects to its master. While there is no route, the route is paused (its
/// master is suspect), or the master refuses during a failover, waits (up to `wait_for_master`)
/// for the next route, so a client that connects mid-failover gets a working connection instead
/// of an error.
pub(crate) async fn connect(
    dp: &DataPath,
    s: &Settings,
    stop: &CancellationToken,
) -> Option<(Arc<Route>, TcpStream)> {
    let deadline = tokio::time::Instant::now() + s.wait_for_master;
    let mut failed_epoch = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let route = match dp.table.load().filter(|r| Some(r.epoch) != failed_epoch) {
            Some(r) => r,
            None => {
                let waited = tokio::select! {
                    _ = stop.cancelled() => None,
                    r = dp.table.wait_for_route_except(failed_epoch, remaining) => r,
                };
                match waited {
                    Some(r) => r,
                    None => {
                        let reason = if failed_epoch.is_some() {
                            "backend_connect"
                        } else {
                            "no_master"
                        };
                        metrics::counter!(m::REFUSED, "reason" => reason).increment(1);
                        return None;
                    }
                }
            }
        };
        if route.is_paused() {
            // The master is suspect: wait for it to be confirmed (or replaced), not past the
            // client's own deadline.
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let waited = tokio::select! {
                _ = stop.cancelled() => return None,
                r = tokio::time::timeout(remaining, route.wait_open()) => r,
            };
            if route.is_drained() {
                failed_epoch = Some(route.epoch);
                continue;
            }
            if waited.is_err() {
                metrics::counter!(m::REFUSED, "reason" => "master_suspect").increment(1);
                return None;
            }
        }
        let limit = s.connect_timeout.min(
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(1)),
        );
        match tokio::time::timeout(limit, TcpStream::connect(route.addr)).await {
            Ok(Ok(backend)) if !route.is_drained() => {
                let _ = backend.set_nodelay(true);
                return Some((route, backend));
            }
            // The route changed while connecting: go to the new one.
            Ok(Ok(_)) => failed_epoch = Some(route.epoch),
            Ok(Err(e)) => {
                tracing::debug!(backend = %route.backend, error = %e, "cannot connect to the master");
                failed_epoch = Some(route.epoch);
            }
            Err(_) => {
                tracing::debug!(backend = %route.backend, "connect to the master timed out");
                failed_epoch = Some(route.epoch);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            metrics::counter!(m::REFUSED, "reason" => "backend_connect").increment(1);
            return None;
        }
    }
}
