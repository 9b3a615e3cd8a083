//! A `[sentinel]` address that is not a sentinel is reported as such (one warning, `/status`,
//! the `status` table, a metric), and a failing sentinel is retried with a growing backoff
//! instead of several times a second.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, FOLLOW_TIMEOUT};
use common::{wait_until, RedisNode};

/// A fake peer that answers the first bytes of every connection with `reply` and closes; it
/// records when each connection arrived.
fn fake_peer(reply: &'static [u8]) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    thread::spawn(move || {
        for s in l.incoming().take(1000) {
            let Ok(mut s) = s else { continue };
            seen2.lock().unwrap().push(Instant::now());
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ = s.write_all(reply);
        }
    });
    (addr, seen)
}

fn proxy_with_sentinels(master: &RedisNode, sentinels: &[&str]) -> Proxy {
    let list: Vec<String> = sentinels.iter().map(|s| format!("\"{s}\"")).collect();
    Proxy::start(
        &[master.addr()],
        &format!(
            "[sentinel]\naddresses = [{}]\nmaster_name = \"mymaster\"\n",
            list.join(", ")
        ),
    )
}

/// The `/status` entry of the link to `addr`.
fn link(proxy: &Proxy, addr: &str) -> serde_json::Value {
    proxy.status()["sentinel_links"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["sentinel"].as_str() == Some(addr))
        .cloned()
        .unwrap_or_default()
}

fn link_state(proxy: &Proxy, addr: &str) -> String {
    link(proxy, addr)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for four failed tries in a row on `addr`'s link; the wait before the fifth has grown
/// to 1.6 s (200, 400, 800, 1600 ms).
fn wait_for_backoff(proxy: &Proxy, addr: &str) {
    wait_until(Duration::from_secs(20), "four failed tries", || {
        link(proxy, addr)["failures"].as_u64() >= Some(4)
    });
    let l = link(proxy, addr);
    assert!(l["retry_in_ms"].as_u64() >= Some(1600), "{l}");
}

/// A Redis data port answers `SENTINEL` with an unknown-command error: the proxy says so once,
/// in `/status`, the `status` table and the metric, and keeps backing off.
#[test]
fn a_redis_data_port_configured_as_a_sentinel_is_reported() {
    let master = RedisNode::master();
    let (fake, seen) = fake_peer(
        b"-ERR unknown command 'SENTINEL', with args beginning with: 'get-master-addr-by-name'\r\n",
    );
    // The real data port too: the same diagnosis on a real redis-server.
    let proxy = proxy_with_sentinels(&master, &[&fake, &master.addr()]);
    proxy.wait_master(&master.addr());
    for addr in [fake.as_str(), &master.addr()] {
        wait_until(FOLLOW_TIMEOUT, "the link marked not a sentinel", || {
            link_state(&proxy, addr) == "not_a_sentinel"
        });
        assert_eq!(
            proxy.metric(&format!(
                "redis_master_proxy_sentinel_misconfigured{{sentinel=\"{addr}\"}}"
            )),
            Some(1.0)
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redis-master-proxy"))
        .args(["status", "--admin", &proxy.admin])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!("sentinel {fake}: NOT A SENTINEL")),
        "{table}"
    );

    // Four tries, the waits between them growing, and one warning.
    wait_for_backoff(&proxy, &fake);
    assert!(!seen.lock().unwrap().is_empty());
    let log = proxy.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("does not answer as a sentinel") && l.contains(&fake))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

/// A peer that answers bytes that are not RESP is not a sentinel either, and is not retried
/// several times a second.
#[test]
fn a_peer_answering_garbage_is_not_a_sentinel_and_is_retried_with_backoff() {
    let master = RedisNode::master();
    let (fake, seen) = fake_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let proxy = proxy_with_sentinels(&master, &[&fake]);
    wait_until(FOLLOW_TIMEOUT, "the link marked not a sentinel", || {
        link_state(&proxy, &fake) == "not_a_sentinel"
    });
    wait_for_backoff(&proxy, &fake);
    assert!(!seen.lock().unwrap().is_empty());
    let lines = proxy
        .log()
        .lines()
        .filter(|l| l.contains(&fake) && !l.contains("DEBUG"))
        .count();
    assert!(
        lines <= 2,
        "logged on transitions only, not per try:\n{}",
        proxy.log()
    );
}
