//! Fuzzes what the proxy makes of sentinel pub/sub messages (`parse_event`). (How the
//! sentinels' answers are counted is the control state machine's, property-tested in
//! `tests/decision_props.rs`.)
//!
//! Input layout, lines separated by `\n`: channel, master name, payload (anything after is
//! ignored). A missing line is empty.
//!
//! Checked on every input, beyond "does not panic":
//! - an event is only returned for a known channel, and is about the master the proxy watches:
//!   the payload names `master_name` where sentinels put the master's name (first word of
//!   `+switch-master`, the word after `@`, or the second word of a `master …` instance);
//! - its addresses are the ones in the payload (the subject: the new master of `+switch-master`,
//!   the replica of a `slave …` instance), and its kind follows from the channel
//!   (`-failover-abort-*` aborts; `+sdown`/`-sdown` only for the master instance itself).

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_master_proxy::config::HostPort;
use redis_master_proxy::control::sentinel::{parse_event, Kind, CHANNELS};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (channel, master_name, payload) = (next(), next(), next());
    if let Some(event) = parse_event(&channel, &payload, &master_name) {
        check_event(&channel, &payload, &master_name, &event);
    }
});

fn check_event(
    channel: &str,
    payload: &str,
    master_name: &str,
    e: &redis_master_proxy::control::sentinel::Event,
) {
    assert_eq!(e.channel, channel);
    assert!(CHANNELS.contains(&channel));
    let t: Vec<&str> = payload.split_whitespace().collect();
    let addr = |host: &str, port: &str| {
        port.parse::<u16>().ok().map(|port| HostPort {
            host: host.to_string(),
            port,
        })
    };
    if channel == "+switch-master" {
        assert_eq!(t.first(), Some(&master_name), "switch of another master");
        assert_eq!(e.kind, Kind::FailoverUnderWay);
        assert_eq!(e.old_master, addr(t[1], t[2]));
        assert_eq!(e.subject, addr(t[3], t[4]));
        return;
    }
    let (name, ip, port) = match t.iter().position(|w| *w == "@") {
        Some(at) => (t[at + 1], t[at + 2], t[at + 3]),
        None => {
            assert_eq!(
                t[0], "master",
                "no `@` and not a master instance: {payload:?}"
            );
            (t[1], t[2], t[3])
        }
    };
    assert_eq!(name, master_name, "event about another master");
    assert_eq!(e.old_master, addr(ip, port));
    let subject = match t.as_slice() {
        ["slave", _, ip, port, "@", ..] => addr(ip, port),
        _ => None,
    };
    assert_eq!(e.subject, subject);
    if channel.ends_with("sdown") {
        assert_eq!(t[0], "master", "{channel} of a {} instance", t[0]);
    }
    assert_eq!(
        e.kind == Kind::Aborted,
        channel.starts_with("-failover-abort"),
        "{channel} gave {:?}",
        e.kind
    );
}
