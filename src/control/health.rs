//! One health check of one backend: resolve, connect, `AUTH`, `INFO replication`, all within
//! one timeout.
//!
//! Every check resolves the host name again (a pod that restarts with a new IP is followed at
//! the next check) and opens a fresh connection, as HAProxy's `tcp-check` does, so a check never
//! depends on a connection that went stale while the node was paused or moved. What is read is
//! bounded by [`MAX_REPLY_BYTES`](crate::redis::resp::MAX_REPLY_BYTES); a peer that accepts and
//! never answers (a `SIGSTOP`ped Redis) is caught by the timeout. The connection itself is
//! [`crate::redis::client`]'s.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Auth, HostPort};
use crate::redis::client::{open, read_frame, CheckError};
use crate::redis::info::{self, ReplicationInfo};

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct Report {
    /// The address the name resolved to, when resolution succeeded.
    pub addr: Option<SocketAddr>,
    pub result: Result<ReplicationInfo, CheckError>,
    pub latency: Duration,
}

/// Checks `backend` once, within `timeout`.
pub async fn check(backend: &HostPort, auth: Option<&Auth>, timeout: Duration) -> Report {
    let started = Instant::now();
    // Shared with the check future so a timeout can say where it stopped.
    let progress: Mutex<(&'static str, Option<SocketAddr>)> = Mutex::new(("resolving", None));
    let set = |stage: &'static str, addr: Option<SocketAddr>| {
        if let Ok(mut p) = progress.lock() {
            p.0 = stage;
            if addr.is_some() {
                p.1 = addr;
            }
        }
    };
    let run = async {
        let (mut stream, mut buf) = open(backend, auth, &[b"INFO", b"replication"], &set).await?;
        set("waiting for the INFO reply", None);
        let frame = read_frame(&mut stream, &mut buf).await?;
        info::parse_info_reply(&frame).map_err(CheckError::Reply)
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout {
            timeout,
            stage: progress.lock().map(|p| p.0).unwrap_or("checking"),
        }),
    };
    let addr = progress.lock().ok().and_then(|p| p.1);
    Report {
        addr,
        result,
        latency: started.elapsed(),
    }
}
