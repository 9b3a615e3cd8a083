//! The admin HTTP listener: `/metrics`, `/livez`, `/readyz`, `/status`.
//!
//! A deliberately small HTTP/1.x server: one `GET` per connection, the request head bounded to
//! [`MAX_HEAD`] bytes and to [`REQUEST_TIMEOUT`], so a malformed, oversized or stalled request
//! gets a 4xx (or is dropped) without holding anything up. It runs on its own listener and its
//! own tasks, apart from client traffic.
//!
//! - `/livez`: 200 while the process runs. Never tied to having a master: a liveness probe that
//!   fails during a failover would restart every proxy at the worst moment.
//! - `/readyz`: 200 only while a master is known and the proxy is not shutting down.
//! - `/metrics`: Prometheus text.
//! - `/status`: JSON of backends, roles, offsets, the current master and client sessions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::control::Status;
use crate::listener::DataPath;

/// Largest request head accepted; more is answered 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// A client that has not sent a complete head by then is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more wait in the kernel backlog.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// What the admin endpoints read.
pub struct AdminState {
    pub data: Arc<DataPath>,
    pub status: Arc<ArcSwap<Status>>,
    pub prometheus: PrometheusHandle,
    /// Fired when shutdown begins, so `/readyz` turns 503 before sessions drain.
    pub shutting_down: CancellationToken,
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
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
                tokio::spawn(async move {
                    let _ = handle(stream, &state).await;
                    drop(permit);
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn handle(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return respond(&mut stream, 408, "text/plain", "request timeout\n").await,
    };
    let (status, ctype, body) = route(&head, state);
    respond(&mut stream, status, ctype, &body).await
}

/// Reads up to the blank line that ends the head; `None` when it exceeds [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// Picks the response for a request head: `(status, content type, body)`.
pub fn route(head: &[u8], state: &AdminState) -> (u16, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let Some(version) = version.filter(|v| v.starts_with("HTTP/1.")) else {
        return (400, "text/plain", "bad request\n".into());
    };
    let _ = version;
    if method != Some("GET") && method != Some("HEAD") {
        return (405, "text/plain", "only GET\n".into());
    }
    let path = target.unwrap_or("/").split('?').next().unwrap_or("/");
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

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// `GET /status` from a running proxy (for the `status` command); returns the JSON body.
pub fn fetch_status(admin: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(admin)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.take(16 * 1024 * 1024)
        .read_to_end(&mut resp)
        .map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

/// Renders the `/status` JSON as a table for humans.
pub fn status_table(json: &str) -> Result<String, String> {
    use std::fmt::Write;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v.get("master").filter(|m| !m.is_null()) {
        Some(m) => {
            let since = m["since_unix"].as_u64().unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "master: {} ({})  epoch {}  for {}s{}",
                s(&m["backend"]),
                s(&m["address"]),
                s(&m["epoch"]),
                now.saturating_sub(since),
                if m["paused"].as_bool() == Some(true) {
                    "  PAUSED (master suspect or held: sessions wait)"
                } else {
                    ""
                }
            );
        }
        None => out.push_str("master: NONE (clients wait, then are refused)\n"),
    }
    let _ = writeln!(
        out,
        "client connections: {}   split brain: {}   check rounds: {}",
        s(&v["client_connections"]),
        s(&v["split_brain"]),
        s(&v["check_rounds"])
    );
    if let Some(sn) = v.get("sentinel").filter(|x| !x.is_null()) {
        let _ = writeln!(
            out,
            "sentinels: {}/{} reachable, they name {} ({}){}{}",
            s(&sn["reachable"]),
            s(&sn["configured"]),
            s(&sn["master"]),
            s(&sn["backend"]),
            if sn["disagrees"].as_bool() == Some(true) {
                "  DISAGREE with INFO"
            } else {
                ""
            },
            sn["hold"]
                .as_str()
                .map(|h| format!("  holding old master {h}"))
                .unwrap_or_default()
        );
    }
    let d = &v["decisions"];
    for (key, what) in [
        ("split_brain_masters", "split brain between"),
        (
            "uncorroborated_promotions",
            "promotion not followed (uncorroborated)",
        ),
        ("superseded_histories", "history excluded"),
    ] {
        for item in d[key].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{what}: {}", s(item));
        }
    }
    if let Some(sn) = v.get("sentinel").filter(|x| !x.is_null()) {
        for item in sn["distrusted"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "sentinel distrusted: {}", s(item));
        }
    }
    let _ = writeln!(
        out,
        "\n{:<44} {:<22} {:<5} {:<8} {:>12} {:>10} {:>9}  ERROR",
        "BACKEND", "ADDRESS", "UP", "ROLE", "OFFSET", "LAG", "CHECK ms"
    );
    for b in v["backends"].as_array().into_iter().flatten() {
        let ms = b["last_check_ms"]
            .as_f64()
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<44} {:<22} {:<5} {:<8} {:>12} {:>10} {:>9}  {}",
            s(&b["backend"]),
            s(&b["address"]),
            match (b["up"].as_bool(), b["suspect"].as_bool()) {
                (Some(true), Some(true)) => "SLOW",
                (Some(true), _) => "up",
                _ => "DOWN",
            },
            s(&b["role"]),
            s(&b["repl_offset"]),
            s(&b["lag_bytes"]),
            ms,
            s(&b["error"])
        );
    }
    Ok(out)
}
