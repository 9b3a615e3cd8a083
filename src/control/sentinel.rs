//! Sentinel as a second, event-driven source of truth.
//!
//! Two kinds of contact with each configured sentinel:
//! - a **subscription** to its failover events, kept open (reconnecting with backoff), so a
//!   failover is known within milliseconds of the sentinel deciding it, not at the next check
//!   tick ([`subscribe_loop`]);
//! - a **query** each check round, `SENTINEL get-master-addr-by-name` ([`query_master`]), whose
//!   answers the control plane's state machine counts (a majority of the *configured* sentinels).
//!
//! Sentinel is never trusted alone: what its answers and events may change is decided by the
//! numbered rules of [`crate::control`]. Event parsing is sans-IO and tested on real payloads.

use std::net::SocketAddr;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, HostPort};
use crate::metrics as m;
use crate::redis::client::{self, CheckError};

/// The event channels the proxy subscribes to on every sentinel.
pub const CHANNELS: &[&str] = &[
    "+switch-master",
    "+selected-slave",
    "+promoted-slave",
    "+failover-state-select-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "+failover-end-for-timeout",
    "+try-failover",
    "+elected-leader",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "-failover-abort-master-not-found",
];

/// What an event means for routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A failover of our master is committed (a replica was selected or promoted, or the switch
    /// is announced): stop feeding the old master now.
    FailoverUnderWay,
    /// A failover was given up: the old master may be routed to again.
    Aborted,
    /// Something changed (down/up, a failover attempt, its end): check now.
    Activity,
}

/// One sentinel event about the monitored master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The channel, e.g. `+switch-master` (a bounded set: used as a metric label).
    pub channel: &'static str,
    pub kind: Kind,
    /// The master being failed over (the old one), as the sentinel names it.
    pub old_master: Option<HostPort>,
    /// The instance the event names besides the master: the replica selected or promoted
    /// (`+selected-slave`, `+promoted-slave`, …) or the new master (`+switch-master`). A
    /// promotion the proxy sees in INFO is corroborated by an event that names that node.
    pub subject: Option<HostPort>,
}

fn host_port(host: &str, port: &str) -> Option<HostPort> {
    Some(HostPort {
        host: host.to_string(),
        port: port.parse().ok()?,
    })
}

/// Interprets one pub/sub message. `None`: not about `master_name`, or not an event we use.
pub fn parse_event(channel: &str, payload: &str, master_name: &str) -> Option<Event> {
    let channel: &'static str = CHANNELS.iter().find(|c| **c == channel)?;
    let t: Vec<&str> = payload.split_whitespace().collect();
    if channel == "+switch-master" {
        // <master name> <oldip> <oldport> <newip> <newport>
        if t.len() < 5 || t[0] != master_name {
            return None;
        }
        return Some(Event {
            channel,
            kind: Kind::FailoverUnderWay,
            old_master: host_port(t[1], t[2]),
            subject: host_port(t[3], t[4]),
        });
    }
    // <instance-type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>]
    let (name, ip, port) = match t.iter().position(|x| *x == "@") {
        Some(at) if t.len() >= at + 4 => (t[at + 1], t[at + 2], t[at + 3]),
        Some(_) => return None,
        None if t.len() >= 4 && t[0] == "master" => (t[1], t[2], t[3]),
        None => return None,
    };
    if name != master_name {
        return None;
    }
    // Replica or sentinel instances going up and down are not about the master's route.
    if (channel == "+sdown" || channel == "-sdown") && t[0] != "master" {
        return None;
    }
    let kind = match channel {
        "+selected-slave"
        | "+promoted-slave"
        | "+failover-state-send-slaveof-noone"
        | "+failover-state-wait-promotion"
        | "+failover-state-reconf-slaves" => Kind::FailoverUnderWay,
        c if c.starts_with("-failover-abort") => Kind::Aborted,
        _ => Kind::Activity,
    };
    // `slave <name> <ip> <port> @ …` names the replica the event is about.
    let subject = match t.as_slice() {
        ["slave", _, ip, port, "@", ..] => host_port(ip, port),
        _ => None,
    };
    Some(Event {
        channel,
        kind,
        old_master: host_port(ip, port),
        subject,
    })
}

/// Asks one sentinel which address it holds for `master_name`.
pub async fn query_master(
    sentinel: &HostPort,
    auth: Option<&Auth>,
    master_name: &str,
    timeout: Duration,
) -> Result<Option<HostPort>, CheckError> {
    let run = async {
        let cmd: [&[u8]; 3] = [
            b"SENTINEL",
            b"get-master-addr-by-name",
            master_name.as_bytes(),
        ];
        let (mut stream, mut buf) = client::open(sentinel, auth, &cmd, &|_, _| {}).await?;
        let frame = client::read_frame(&mut stream, &mut buf).await?;
        match frame {
            OwnedFrame::Array(parts) if parts.len() == 2 => {
                let text = |f: &OwnedFrame| match f {
                    OwnedFrame::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    _ => None,
                };
                let host = text(&parts[0]);
                let port = text(&parts[1]);
                match (host, port) {
                    (Some(h), Some(p)) => Ok(host_port(&h, &p)),
                    _ => Err(CheckError::Reply(crate::redis::resp::ReplyError::Protocol(
                        "master address is not two strings".into(),
                    ))),
                }
            }
            OwnedFrame::Null | OwnedFrame::Array(_) => Ok(None),
            OwnedFrame::Error(e) => Err(CheckError::Reply(crate::redis::resp::ReplyError::Redis(
                crate::redis::resp::ServerError::new(e),
            ))),
            _ => Err(CheckError::Reply(crate::redis::resp::ReplyError::Protocol(
                "unexpected reply to SENTINEL get-master-addr-by-name".into(),
            ))),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout {
            timeout,
            stage: "asking the sentinel",
        }),
    }
}

/// An event with the addresses resolved, as the control loop consumes it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub event: Event,
    pub old_master: Option<SocketAddr>,
    /// The event's subject (see [`Event::subject`]), resolved.
    pub subject: Option<SocketAddr>,
    /// Which sentinel sent it.
    pub sentinel: String,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// A sentinel that keeps failing is retried at most this rarely: a sentinel restarting is back
/// within a few tries, and one that is misconfigured or answers garbage costs one connection
/// every 30 s instead of several a second.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A subscription that held this long was a working one: its loss starts the backoff over.
const STABLE: Duration = Duration::from_secs(10);

/// How the event subscription to one sentinel stands: logged on transitions, shown by
/// `/status` (`sentinel_links`) and, when the address is not a sentinel for our master, counted
/// by the `sentinel_misconfigured` gauge.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkState {
    /// Not tried yet.
    Connecting,
    /// Confirmed as a sentinel that monitors our master, and subscribed to its events.
    Subscribed,
    /// Cannot be reached or dropped the connection (down, refused, timed out, AUTH refused).
    Unreachable { error: String },
    /// Answers, but not as a sentinel: e.g. a Redis data port, where `SENTINEL` is an unknown
    /// command. Its events will never come; this is a configuration error.
    NotASentinel { reply: String },
    /// A sentinel that does not monitor `sentinel.master_name` (a typo in the name, or another
    /// group's sentinels): its events are never about our master.
    UnknownMaster { master_name: String },
}

impl LinkState {
    /// `true` for the states that are the operator's to fix, not a passing outage.
    pub fn is_misconfigured(&self) -> bool {
        matches!(
            self,
            LinkState::NotASentinel { .. } | LinkState::UnknownMaster { .. }
        )
    }

    fn same_kind(&self, other: &LinkState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// One link as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    #[serde(flatten)]
    pub state: LinkState,
    /// Tries in a row that ended without a stable subscription.
    pub failures: u32,
    /// The wait before the next try, while one is pending.
    pub retry_in_ms: Option<u64>,
}

/// The state of every sentinel link, shared by the subscription tasks (writers) and the admin
/// listener (`/status`). Keyed by the address as configured.
#[derive(Clone, Default)]
pub struct Links(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, LinkStatus>>>);

impl Links {
    /// Forgets every link and starts `addresses` as `Connecting` (a reload may change them).
    pub fn reset(&self, addresses: &[HostPort]) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
            for a in addresses {
                m.insert(
                    a.to_string(),
                    LinkStatus {
                        state: LinkState::Connecting,
                        failures: 0,
                        retry_in_ms: None,
                    },
                );
            }
        }
    }

    /// Records `state` for `label` (with the failures so far and the wait before the next
    /// try); returns the previous state.
    fn set(
        &self,
        label: &str,
        state: LinkState,
        failures: u32,
        retry_in: Option<Duration>,
    ) -> Option<LinkState> {
        metrics::gauge!(m::SENTINEL_MISCONFIGURED, "sentinel" => label.to_string())
            .set(if state.is_misconfigured() { 1.0 } else { 0.0 });
        let status = LinkStatus {
            state,
            failures,
            retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
        };
        self.0
            .lock()
            .ok()
            .and_then(|mut m| m.insert(label.to_string(), status))
            .map(|old| old.state)
    }

    /// Every link, by address.
    pub fn snapshot(&self) -> Vec<(String, LinkStatus)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Logs a link's new state when its kind changed (the first failure, a recovery, a different
/// kind of failure), so a sentinel retried every 30 s for hours logs once, not every try.
fn log_transition(label: &str, old: Option<&LinkState>, new: &LinkState) {
    if old.is_some_and(|o| o.same_kind(new)) {
        tracing::debug!(sentinel = %label, state = ?new, "sentinel link unchanged");
        return;
    }
    match new {
        LinkState::Connecting => {}
        LinkState::Subscribed => {
            tracing::info!(sentinel = %label, "subscribed to sentinel failover events")
        }
        LinkState::Unreachable { error } => tracing::warn!(
            sentinel = %label,
            error = %error,
            "no subscription to sentinel events; retrying with backoff (up to 30s)"
        ),
        LinkState::NotASentinel { reply } => tracing::warn!(
            sentinel = %label,
            reply = %reply,
            "this address does not answer as a sentinel (a Redis data port?): check \
             sentinel.addresses; its events are not received"
        ),
        LinkState::UnknownMaster { master_name } => tracing::warn!(
            sentinel = %label,
            master_name = %master_name,
            "this sentinel does not monitor sentinel.master_name: check the name; its events \
             are not received"
        ),
    }
}

/// Keeps a subscription to `sentinel`'s failover events until `stop`, reconnecting with
/// backoff, and forwards the events about `master_name` to `tx`. The link's state is kept in
/// `links` and logged on transitions.
pub async fn subscribe_loop(
    sentinel: HostPort,
    auth: Option<Auth>,
    master_name: String,
    connect_timeout: Duration,
    tx: mpsc::Sender<Resolved>,
    links: Links,
    stop: CancellationToken,
) {
    let label = sentinel.to_string();
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let session = subscribe_once(
            &sentinel,
            auth.as_ref(),
            &master_name,
            connect_timeout,
            &tx,
            &links,
            &label,
        );
        let (subscribed_for, state) = tokio::select! {
            _ = stop.cancelled() => return,
            r = session => r,
        };
        metrics::gauge!(m::SENTINEL_UP, "sentinel" => label.clone()).set(0.0);
        backoff = next_backoff(backoff, subscribed_for);
        failures = if backoff == BACKOFF_MIN {
            1
        } else {
            failures + 1
        };
        let old = links.set(&label, state.clone(), failures, Some(backoff));
        log_transition(&label, old.as_ref(), &state);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// The wait before the next try: back to the minimum after a subscription that held
/// [`STABLE`], else twice the last, up to [`BACKOFF_MAX`]. The first wait is the minimum.
fn next_backoff(last: Duration, subscribed_for: Option<Duration>) -> Duration {
    if subscribed_for.is_some_and(|d| d >= STABLE) {
        BACKOFF_MIN
    } else {
        (last * 2).min(BACKOFF_MAX)
    }
}

/// Turns the reply to `SENTINEL get-master-addr-by-name` into whether this is a sentinel that
/// monitors `master_name`: `Ok` for one, the misconfiguration otherwise.
fn sentinel_reply(frame: &OwnedFrame, master_name: &str) -> Result<(), LinkState> {
    match frame {
        OwnedFrame::Array(parts) if parts.len() == 2 => Ok(()),
        OwnedFrame::Null | OwnedFrame::Array(_) => Err(LinkState::UnknownMaster {
            master_name: master_name.to_string(),
        }),
        OwnedFrame::Error(e) => Err(LinkState::NotASentinel {
            reply: format!("-{}", e.chars().take(120).collect::<String>()),
        }),
        OwnedFrame::SimpleString(_) | OwnedFrame::BulkString(_) | OwnedFrame::Integer(_) => {
            Err(LinkState::NotASentinel {
                reply: "a single value, not a master address".into(),
            })
        }
    }
}

/// One subscription session: confirms the peer is a sentinel that monitors `master_name`
/// (`SENTINEL get-master-addr-by-name`, on the same connection), subscribes, forwards events.
/// Returns, when it ends, how long it was subscribed (if it got that far) and the state the
/// link is in.
async fn subscribe_once(
    sentinel: &HostPort,
    auth: Option<&Auth>,
    master_name: &str,
    connect_timeout: Duration,
    tx: &mpsc::Sender<Resolved>,
    links: &Links,
    label: &str,
) -> (Option<Duration>, LinkState) {
    let unreachable = |e: CheckError| LinkState::Unreachable {
        error: e.to_string(),
    };
    let ask: [&[u8]; 3] = [
        b"SENTINEL",
        b"get-master-addr-by-name",
        master_name.as_bytes(),
    ];
    let opened = tokio::time::timeout(connect_timeout, async {
        let (stream, mut buf) = client::open(sentinel, auth, &ask, &|_, _| {}).await?;
        let mut stream = stream;
        let frame = client::read_frame(&mut stream, &mut buf).await?;
        Ok::<_, CheckError>((stream, buf, frame))
    })
    .await;
    let (mut stream, mut buf, frame) = match opened {
        Ok(Ok(s)) => s,
        // It answered, but with bytes that are not RESP (or far too many of them).
        Ok(Err(CheckError::Reply(e))) => {
            return (
                None,
                LinkState::NotASentinel {
                    reply: e.to_string(),
                },
            )
        }
        Ok(Err(e)) => return (None, unreachable(e)),
        Err(_) => {
            return (
                None,
                unreachable(CheckError::Timeout {
                    timeout: connect_timeout,
                    stage: "asking the sentinel",
                }),
            )
        }
    };
    if let Err(state) = sentinel_reply(&frame, master_name) {
        return (None, state);
    }
    let mut cmd: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    cmd.extend(CHANNELS.iter().map(|c| c.as_bytes()));
    let mut request = bytes::BytesMut::new();
    crate::redis::resp::encode_command(&mut request, &cmd);
    if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut stream, &request).await {
        return (None, unreachable(CheckError::Io(std::sync::Arc::new(e))));
    }
    // A subscription is quiet until a failover: keepalive finds a peer that vanished.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let mut subscribed: Option<tokio::time::Instant> = None;
    let since = |s: Option<tokio::time::Instant>| s.map(|t| t.elapsed());
    loop {
        let frame = match client::read_frame(&mut stream, &mut buf).await {
            Ok(f) => f,
            Err(e) => return (since(subscribed), unreachable(e)),
        };
        let parts = match frame {
            OwnedFrame::Array(parts) => parts,
            OwnedFrame::Error(e) if subscribed.is_none() => {
                return (
                    None,
                    LinkState::NotASentinel {
                        reply: format!("-{}", e.chars().take(120).collect::<String>()),
                    },
                )
            }
            _ => continue,
        };
        let text = |f: Option<&OwnedFrame>| match f {
            Some(OwnedFrame::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let kind = text(parts.first());
        if kind == "subscribe" {
            if subscribed.is_none() {
                subscribed = Some(tokio::time::Instant::now());
                let old = links.set(label, LinkState::Subscribed, 0, None);
                log_transition(label, old.as_ref(), &LinkState::Subscribed);
                metrics::gauge!(m::SENTINEL_UP, "sentinel" => label.to_string()).set(1.0);
            }
            continue;
        }
        if kind != "message" {
            continue;
        }
        let (channel, payload) = (text(parts.get(1)), text(parts.get(2)));
        let Some(event) = parse_event(&channel, &payload, master_name) else {
            continue;
        };
        metrics::counter!(m::SENTINEL_EVENTS, "event" => event.channel).increment(1);
        tracing::info!(sentinel = %label, event = event.channel, payload = %payload, "sentinel event");
        let old_master = match &event.old_master {
            Some(hp) => client::resolve(hp).await.ok(),
            None => None,
        };
        let subject = match &event.subject {
            Some(hp) => client::resolve(hp).await.ok(),
            None => None,
        };
        let resolved = Resolved {
            event,
            old_master,
            subject,
            sentinel: label.to_string(),
        };
        if tx.send(resolved).await.is_err() {
            return (since(subscribed), unreachable(CheckError::Closed));
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_restarts_after_a_stable_subscription() {
        let mut b = BACKOFF_MIN;
        let mut waits = Vec::new();
        for _ in 0..12 {
            b = next_backoff(b, None);
            waits.push(b.as_millis());
        }
        assert_eq!(&waits[..4], &[200, 400, 800, 1600]);
        assert_eq!(*waits.last().unwrap(), 30_000);
        // A subscription that dropped at once does not reset it; one that held does.
        assert_eq!(
            next_backoff(b, Some(Duration::from_millis(50))),
            BACKOFF_MAX
        );
        assert_eq!(next_backoff(b, Some(STABLE)), BACKOFF_MIN);
    }

    #[test]
    fn a_reply_tells_a_sentinel_from_a_data_port_or_a_wrong_name() {
        let addr = OwnedFrame::Array(vec![
            OwnedFrame::BulkString(b"10.0.0.1".to_vec()),
            OwnedFrame::BulkString(b"6379".to_vec()),
        ]);
        assert_eq!(sentinel_reply(&addr, "m"), Ok(()));
        assert_eq!(
            sentinel_reply(&OwnedFrame::Null, "m"),
            Err(LinkState::UnknownMaster {
                master_name: "m".into()
            })
        );
        let data_port = OwnedFrame::Error("ERR unknown command 'SENTINEL'".into());
        assert!(matches!(
            sentinel_reply(&data_port, "m"),
            Err(LinkState::NotASentinel { reply }) if reply.contains("unknown command")
        ));
        assert!(sentinel_reply(&OwnedFrame::Integer(1), "m")
            .unwrap_err()
            .is_misconfigured());
    }

    use super::*;

    fn hp(s: &str) -> HostPort {
        s.parse().unwrap()
    }

    /// Payloads as Redis 7 sentinels publish them.
    #[test]
    fn events_from_real_payloads() {
        let cases: &[(&str, &str, Option<Kind>, Option<&str>)] = &[
            (
                "+switch-master",
                "mymaster 127.0.0.1 6379 127.0.0.1 6380",
                Some(Kind::FailoverUnderWay),
                Some("127.0.0.1:6379"),
            ),
            (
                "+switch-master",
                "othermaster 127.0.0.1 6379 127.0.0.1 6380",
                None,
                None,
            ),
            (
                "+selected-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
                Some(Kind::FailoverUnderWay),
                Some("127.0.0.1:6379"),
            ),
            (
                "+promoted-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
                Some(Kind::FailoverUnderWay),
                Some("127.0.0.1:6379"),
            ),
            (
                "+failover-state-send-slaveof-noone",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
                Some(Kind::FailoverUnderWay),
                Some("127.0.0.1:6379"),
            ),
            (
                "+failover-state-select-slave",
                "master mymaster 127.0.0.1 6379",
                Some(Kind::Activity),
                Some("127.0.0.1:6379"),
            ),
            (
                "+odown",
                "master mymaster 127.0.0.1 6379 #quorum 2/2",
                Some(Kind::Activity),
                Some("127.0.0.1:6379"),
            ),
            (
                "+sdown",
                "master mymaster 127.0.0.1 6379",
                Some(Kind::Activity),
                Some("127.0.0.1:6379"),
            ),
            (
                "+sdown",
                "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379",
                None,
                None,
            ),
            (
                "+sdown",
                "sentinel 0123abcd 127.0.0.1 26380 @ mymaster 127.0.0.1 6379",
                None,
                None,
            ),
            (
                "-failover-abort-no-good-slave",
                "master mymaster 127.0.0.1 6379",
                Some(Kind::Aborted),
                Some("127.0.0.1:6379"),
            ),
            (
                "+failover-end",
                "master mymaster 127.0.0.1 6379",
                Some(Kind::Activity),
                Some("127.0.0.1:6379"),
            ),
            ("+tilt", "#tilt mode entered", None, None),
            ("+switch-master", "mymaster garbage", None, None),
            ("+selected-slave", "slave x @ mymaster", None, None),
            ("+odown", "", None, None),
        ];
        for (ch, payload, kind, old) in cases {
            let e = parse_event(ch, payload, "mymaster");
            assert_eq!(e.as_ref().map(|e| e.kind.clone()), *kind, "{ch} {payload}");
            assert_eq!(
                e.as_ref().and_then(|e| e.old_master.clone()),
                old.map(hp),
                "{ch} {payload}"
            );
        }
        let e = parse_event(
            "+switch-master",
            "mymaster 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster",
        )
        .unwrap();
        assert_eq!(e.subject, Some(hp("127.0.0.1:6380")));
        let e = parse_event(
            "+selected-slave",
            "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
            "mymaster",
        )
        .unwrap();
        assert_eq!(
            e.subject,
            Some(hp("127.0.0.1:6380")),
            "the selected replica"
        );
    }
}
