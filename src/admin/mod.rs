//! The admin HTTP listener: `/metrics`, `/livez`, `/readyz`, `/status`.
//!
//! HTTP/1.1 is served by hyper; this module only bounds what a connection may hold and picks
//! the responses. The bounds exist because the kubelet's probes share this listener with
//! whatever else reaches it (a scraper that misbehaves, a port scan): a probe that waits behind
//! them for its 1 s timeout takes the replica out of the Service, then restarts it.
//! - each connection gets [`HEADER_READ_TIMEOUT`] to send its request head, counted from the
//!   accept (an idle or byte-a-second client is closed then), and [`CONNECTION_TIMEOUT`] for
//!   everything, response included (a client that never reads its `/metrics` is dropped);
//! - one request per connection (`Connection: close`), so an idle keep-alive holds nothing;
//! - at most [`MAX_ADMIN_CONNECTIONS`] connections at once, each a small task; more wait in the
//!   kernel backlog until one ends;
//! - request heads larger than [`MAX_HEAD`] are answered 431.
//!
//! It runs on its own listener and its own tasks, apart from client traffic.
//!
//! - `/livez`: 200 while the process runs. Never tied to having a master: a liveness probe that
//!   fails during a failover would restart every proxy at the worst moment.
//! - `/readyz`: 200 only while a master is known and the proxy is not shutting down.
//! - `/metrics`: Prometheus text.
//! - `/status`: JSON of backends, roles, offsets, the current master and client sessions.
//!
//! `HEAD` is answered like `GET`, without the body.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::MAX_ADMIN_CONNECTIONS;
use crate::data::listener::DataPath;
use crate::status::Status;

/// Largest request head accepted; more is answered 431. (hyper's smallest read buffer.)
pub const MAX_HEAD: usize = 8 * 1024;
/// A connection that has not sent a complete request head this long after the accept is
/// closed: long enough for any real client on a slow link (a head is one packet), short enough
/// that a flood of idle connections cycles out well within a probe period.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a whole connection, response included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
pub struct AdminState {
    pub data: Arc<DataPath>,
    pub status: Arc<ArcSwap<Status>>,
    pub prometheus: PrometheusHandle,
    /// Fired when shutdown begins, so `/readyz` turns 503 before sessions drain.
    pub shutting_down: CancellationToken,
    /// The event subscription to each sentinel, so `/status` shows one that is unreachable or
    /// is not a sentinel at all.
    pub sentinel_links: crate::control::sentinel::Links,
    /// The sentinel listener, when `sentinel.listen` is set.
    pub sentinel_listener: Option<SentinelListener>,
}

/// What `/status` shows of the sentinel listener.
pub struct SentinelListener {
    /// The bound address (with the port the system picked for port 0).
    pub listen: Option<std::net::SocketAddr>,
    pub data: Arc<DataPath>,
    pub status: Arc<ArcSwap<crate::control::sentinel_route::Status>>,
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD);
    let http = Arc::new(http);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                let http = http.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let resp = respond(&req, &state);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    // Errors here are the client's (a reset, a timeout, a malformed head that
                    // hyper already answered): nothing to report.
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
                    }
                    drop(permit);
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn respond<B>(req: &Request<B>, state: &AdminState) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() == Method::GET || req.method() == Method::HEAD {
        route(req.uri().path(), state)
    } else {
        (405, "text/plain", "only GET and HEAD\n".into())
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Picks the response for a path: `(status, content type, body)`.
pub fn route(path: &str, state: &AdminState) -> (u16, &'static str, String) {
    match path {
        "/livez" => (200, "text/plain", "ok\n".into()),
        "/readyz" => {
            let ready = !state.shutting_down.is_cancelled() && state.data.table.load().is_some();
            if ready {
                (200, "text/plain", "ready: master known\n".into())
            } else if state.shutting_down.is_cancelled() {
                (503, "text/plain", "not ready: shutting down\n".into())
            } else {
                (503, "text/plain", "not ready: no master\n".into())
            }
        }
        "/metrics" => {
            state.prometheus.run_upkeep();
            (200, "text/plain; version=0.0.4", state.prometheus.render())
        }
        "/status" => {
            let snapshot = state.status.load();
            let body = serde_json::json!({
                "master": snapshot.master,
                "backends": snapshot.backends,
                "split_brain": snapshot.split_brain,
                "sentinel": snapshot.sentinel,
                "decisions": snapshot.decisions,
                "sentinel_links": state
                    .sentinel_links
                    .snapshot()
                    .into_iter()
                    .map(|(addr, link)| {
                        let mut v = serde_json::json!({ "sentinel": addr });
                        if let (Some(o), Ok(serde_json::Value::Object(l))) =
                            (v.as_object_mut(), serde_json::to_value(&link))
                        {
                            o.extend(l);
                        }
                        v
                    })
                    .collect::<Vec<_>>(),
                "sentinel_listener": state.sentinel_listener.as_ref().map(|l| {
                    let st = l.status.load();
                    serde_json::json!({
                        "listen": l.listen,
                        "current": st.current,
                        "sentinels": st.sentinels,
                        "client_connections": l.data.active.load(Ordering::Relaxed),
                    })
                }),
                "check_rounds": snapshot.rounds,
                "client_connections": state.data.active.load(Ordering::Relaxed),
                "shutting_down": state.shutting_down.is_cancelled(),
            });
            (200, "application/json", format!("{body:#}\n"))
        }
        _ => (
            404,
            "text/plain",
            "not found: try /livez /readyz /metrics /status\n".into(),
        ),
    }
}
