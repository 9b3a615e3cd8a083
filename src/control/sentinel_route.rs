//! The sentinel listener's control plane: which sentinel its clients are relayed to.
//!
//! HAProxy in front of Redis usually has a second frontend, `bind *:26379`, that relays
//! Sentinel clients to any live sentinel. The sentinel listener (`sentinel.listen`) is that
//! frontend: it runs the same accept loop and relay as the master route (`listener.rs`) on its
//! own [`RouteTable`], and this module publishes that table's route.
//!
//! Every `sentinel.check_interval` each sentinel of `[sentinel] addresses` is resolved again
//! and sent `PING` (after `AUTH` when `[sentinel.auth]` is set), bounded by
//! `sentinel.check_timeout`. The rule ([`choose`]):
//! - a sentinel is *up* after one passing check and *down* after [`FALL`] failing ones in a
//!   row (one lost PING on a busy node does not move anyone);
//! - the route stays on the current sentinel while it is up (clients of one sentinel keep
//!   seeing the same one), and moves to the first up sentinel in config order when it is down;
//! - sessions on a sentinel that went down are closed at once (nothing answers there); none is
//!   closed while its sentinel is up. With no sentinel up there is no route: new clients wait
//!   up to `wait_for_master`, then are closed.
//!
//! Any sentinel answers every Sentinel command for every master it monitors, so one healthy
//! sentinel serves all clients; HAProxy's `balance roundrobin` spread load that is negligible.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis_protocol::resp2::types::OwnedFrame;
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, SentinelConfig};
use crate::redis::client::{self, CheckError};
use crate::routing::{DrainMode, RouteTable};

/// Failing checks in a row before an up sentinel counts as down.
pub const FALL: u32 = 2;

/// One sentinel as `/status` shows it (`sentinel_listener.sentinels`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SentinelCheck {
    /// As configured (`host:port`).
    pub sentinel: String,
    /// What it resolved to at the last check.
    pub address: Option<SocketAddr>,
    pub up: bool,
    /// Why the last check failed.
    pub error: Option<String>,
    /// Failing checks in a row.
    pub failures: u32,
}

/// The sentinel listener's state, for `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    /// The sentinel new clients are relayed to (`None`: no sentinel up).
    pub current: Option<String>,
    pub sentinels: Vec<SentinelCheck>,
}

/// The route after a round: keep `current` while it is up (at its address of this round),
/// else the first sentinel that is up; `None` when none is.
pub fn choose(current: Option<&str>, sentinels: &[SentinelCheck]) -> Option<(String, SocketAddr)> {
    let usable = |s: &SentinelCheck| s.up.then_some(s.address).flatten();
    if let Some(c) = sentinels
        .iter()
        .find(|s| Some(s.sentinel.as_str()) == current)
    {
        if let Some(addr) = usable(c) {
            return Some((c.sentinel.clone(), addr));
        }
    }
    sentinels
        .iter()
        .find_map(|s| usable(s).map(|a| (s.sentinel.clone(), a)))
}

/// Folds one check result into a sentinel's state; returns whether `up` flipped.
pub fn observe(s: &mut SentinelCheck, result: Result<SocketAddr, String>) -> bool {
    let was = s.up;
    match result {
        Ok(addr) => {
            s.address = Some(addr);
            s.error = None;
            s.failures = 0;
            s.up = true;
        }
        Err(e) => {
            s.error = Some(e);
            s.failures = s.failures.saturating_add(1);
            if s.failures >= FALL {
                s.up = false;
            }
        }
    }
    was != s.up
}

/// One check: resolve, connect, AUTH, PING, `+PONG`, within `timeout`. Returns the address.
pub async fn ping(
    sentinel: &crate::config::HostPort,
    auth: Option<&Auth>,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let run = async {
        let (mut stream, mut buf) = client::open(sentinel, auth, &[b"PING"], &|_, _| {}).await?;
        let addr = stream
            .peer_addr()
            .map_err(|e| CheckError::Io(std::sync::Arc::new(e)))?;
        match client::read_frame(&mut stream, &mut buf).await? {
            OwnedFrame::SimpleString(s) if s == b"PONG" => Ok(addr),
            OwnedFrame::Error(e) => Err(CheckError::Reply(crate::redis::resp::ReplyError::Redis(
                crate::redis::resp::ServerError::new(e),
            ))),
            _ => Err(CheckError::Reply(crate::redis::resp::ReplyError::Protocol(
                "the answer to PING is not +PONG".into(),
            ))),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer to PING within {timeout:?}")),
    }
}

/// Checks the sentinels every `check_interval` and publishes the route of `table` until
/// `stop`. The route is left as it is when this returns (the caller withdraws it at shutdown).
pub async fn run(
    cfg: SentinelConfig,
    table: Arc<RouteTable>,
    status: Arc<ArcSwap<Status>>,
    stop: CancellationToken,
) {
    let mut sentinels: Vec<SentinelCheck> = cfg
        .addresses
        .iter()
        .map(|a| SentinelCheck {
            sentinel: a.to_string(),
            ..SentinelCheck::default()
        })
        .collect();
    let mut ticker = tokio::time::interval(cfg.check_interval.0);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = cfg.check_timeout.0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut round = tokio::task::JoinSet::new();
        for (i, hp) in cfg.addresses.iter().enumerate() {
            let (hp, auth) = (hp.clone(), cfg.auth.clone());
            round.spawn(async move { (i, ping(&hp, auth.as_ref(), timeout).await) });
        }
        let results = tokio::select! {
            _ = stop.cancelled() => return,
            r = round.join_all() => r,
        };
        for (i, result) in results {
            let s = &mut sentinels[i];
            if observe(s, result) {
                if s.up {
                    tracing::info!(sentinel = %s.sentinel, "sentinel listener: sentinel up");
                } else {
                    tracing::warn!(
                        sentinel = %s.sentinel,
                        error = s.error.as_deref().unwrap_or(""),
                        "sentinel listener: sentinel down; new clients go to another"
                    );
                }
            }
        }
        let current = table.load().map(|r| r.backend.to_string());
        let next = choose(current.as_deref(), &sentinels);
        let changed = table.publish(
            next.clone()
                .map(|(name, addr)| (Arc::from(name.as_str()), addr)),
            DrainMode::Immediate,
        );
        if changed {
            match &next {
                Some((name, addr)) => {
                    tracing::info!(sentinel = %name, address = %addr, "sentinel listener: relaying to this sentinel")
                }
                None => tracing::warn!(
                    "sentinel listener: no sentinel answers; clients wait, then are closed"
                ),
            }
        }
        status.store(Arc::new(Status {
            current: next.map(|(n, _)| n),
            sentinels: sentinels.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, port: u16, up: bool) -> SentinelCheck {
        SentinelCheck {
            sentinel: name.into(),
            address: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            up,
            ..SentinelCheck::default()
        }
    }

    #[test]
    fn the_route_stays_on_a_live_sentinel_and_moves_off_a_dead_one() {
        let all = [s("a", 1, true), s("b", 2, true), s("c", 3, true)];
        assert_eq!(choose(None, &all).unwrap().0, "a");
        assert_eq!(choose(Some("b"), &all).unwrap().0, "b", "sticky while up");
        let b_down = [s("a", 1, true), s("b", 2, false), s("c", 3, true)];
        assert_eq!(choose(Some("b"), &b_down).unwrap().0, "a");
        let none = [s("a", 1, false), s("b", 2, false)];
        assert_eq!(choose(Some("a"), &none), None);
        // A sentinel never resolved is not usable even if marked up.
        let mut unresolved = s("a", 1, true);
        unresolved.address = None;
        assert_eq!(choose(None, &[unresolved, s("b", 2, true)]).unwrap().0, "b");
    }

    #[test]
    fn down_after_fall_failures_up_after_one_pass() {
        let mut x = SentinelCheck::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 26379));
        assert!(observe(&mut x, Ok(addr)), "first pass: up");
        assert!(
            !observe(&mut x, Err("timeout".into())),
            "one failure is not down"
        );
        assert!(x.up);
        assert!(
            observe(&mut x, Err("timeout".into())),
            "FALL failures: down"
        );
        assert!(!x.up);
        assert!(observe(&mut x, Ok(addr)));
        assert_eq!(x.failures, 0);
    }
}
