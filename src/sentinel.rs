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
use crate::health::{self, CheckError};
use crate::metrics as m;

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
        let (mut stream, mut buf) = health::open(sentinel, auth, &cmd, &|_, _| {}).await?;
        let frame = health::read_frame(&mut stream, &mut buf).await?;
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
                    _ => Err(CheckError::Reply(crate::info::ReplyError::Protocol(
                        "master address is not two strings".into(),
                    ))),
                }
            }
            OwnedFrame::Null | OwnedFrame::Array(_) => Ok(None),
            OwnedFrame::Error(e) => Err(CheckError::Reply(crate::info::ReplyError::Redis(e))),
            _ => Err(CheckError::Reply(crate::info::ReplyError::Protocol(
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
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps a subscription to `sentinel`'s failover events until `stop`, reconnecting with
/// backoff, and forwards the events about `master_name` to `tx`.
pub async fn subscribe_loop(
    sentinel: HostPort,
    auth: Option<Auth>,
    master_name: String,
    connect_timeout: Duration,
    tx: mpsc::Sender<Resolved>,
    stop: CancellationToken,
) {
    let label = sentinel.to_string();
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        let session = subscribe_once(
            &sentinel,
            auth.as_ref(),
            &master_name,
            connect_timeout,
            &tx,
            &label,
        );
        let (connected, err) = tokio::select! {
            _ = stop.cancelled() => return,
            r = session => r,
        };
        if connected {
            backoff = BACKOFF_MIN;
            logged_down = false;
        }
        if !logged_down {
            tracing::warn!(sentinel = %label, error = %err, "no subscription to sentinel events; retrying with backoff");
            logged_down = true;
        }
        metrics::gauge!(m::SENTINEL_UP, "sentinel" => label.clone()).set(0.0);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription session: returns when it fails, with whether it got connected.
async fn subscribe_once(
    sentinel: &HostPort,
    auth: Option<&Auth>,
    master_name: &str,
    connect_timeout: Duration,
    tx: &mpsc::Sender<Resolved>,
    label: &str,
) -> (bool, CheckError) {
    let mut cmd: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    cmd.extend(CHANNELS.iter().map(|c| c.as_bytes()));
    let opened = tokio::time::timeout(
        connect_timeout,
        health::open(sentinel, auth, &cmd, &|_, _| {}),
    )
    .await;
    let (mut stream, mut buf) = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (false, e),
        Err(_) => {
            return (
                false,
                CheckError::Timeout {
                    timeout: connect_timeout,
                    stage: "subscribing",
                },
            )
        }
    };
    // A subscription is quiet until a failover: keepalive finds a peer that vanished.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    tracing::info!(sentinel = %label, "subscribed to sentinel failover events");
    metrics::gauge!(m::SENTINEL_UP, "sentinel" => label.to_string()).set(1.0);
    loop {
        let frame = match health::read_frame(&mut stream, &mut buf).await {
            Ok(f) => f,
            Err(e) => return (true, e),
        };
        let OwnedFrame::Array(parts) = frame else {
            continue;
        };
        let text = |f: Option<&OwnedFrame>| match f {
            Some(OwnedFrame::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        if text(parts.first()) != "message" {
            continue; // subscribe confirmations
        }
        let (channel, payload) = (text(parts.get(1)), text(parts.get(2)));
        let Some(event) = parse_event(&channel, &payload, master_name) else {
            continue;
        };
        metrics::counter!(m::SENTINEL_EVENTS, "event" => event.channel).increment(1);
        tracing::info!(sentinel = %label, event = event.channel, payload = %payload, "sentinel event");
        let old_master = match &event.old_master {
            Some(hp) => health::resolve(hp).await.ok(),
            None => None,
        };
        let subject = match &event.subject {
            Some(hp) => health::resolve(hp).await.ok(),
            None => None,
        };
        let resolved = Resolved {
            event,
            old_master,
            subject,
            sentinel: label.to_string(),
        };
        if tx.send(resolved).await.is_err() {
            return (true, CheckError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
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
