//! The proxy stays up and bounded whatever its peers do: a backend that streams garbage forever,
//! a client that never reads, running out of file descriptors, hostile admin requests.
//! Bounds here are generous resource ceilings (memory, CPU seconds over a window), never
//! timings of the happy path.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{wait_until, Client, RedisNode};

/// A fake backend that answers every connection with a 1 GiB bulk header and then bytes until
/// the peer goes away (bounded to ~1 GiB per connection; stops when the test ends).
fn endless_backend() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for s in l.incoming().take(10_000) {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.write_all(b"$1073741824\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..16 * 1024 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn endless_backend_is_down_and_memory_stays_bounded() {
    let master = RedisNode::master();
    let bad = endless_backend();
    let proxy = Proxy::start(&[bad.clone(), master.addr()], "");
    proxy.wait_master(&master.addr());
    let before = proxy.status()["check_rounds"].as_u64().unwrap();
    wait_until(
        Duration::from_secs(30),
        "20 check rounds against the endless backend",
        || proxy.status()["check_rounds"].as_u64().unwrap() >= before + 20,
    );
    let st = proxy.status();
    assert_eq!(st["backends"][0]["up"].as_bool(), Some(false));
    assert!(st["backends"][0]["error"]
        .as_str()
        .unwrap()
        .contains("larger than"));
    // Each check reads at most 64 KiB (+ one read); 20 rounds of 1 GiB offers change nothing.
    let rss = proxy.rss_kib();
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
}

/// The largest output buffer (`omem`, bytes) among the master's client connections.
fn largest_output_buffer(master: &RedisNode) -> u64 {
    let list = master.cmd_ok(&["CLIENT", "LIST"]);
    let text = list.as_string().unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("omem="))
                .and_then(|v| v.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn client_that_never_reads_cannot_make_the_proxy_buffer() {
    let master = RedisNode::master();
    let proxy = Proxy::start(&[master.addr()], "");
    proxy.wait_master(&master.addr());
    let value = "v".repeat(1024 * 1024);
    let mut c = proxy.client();
    assert!(c.cmd_ok(&["SET", "big", &value]).is_ok());
    let baseline = proxy.rss_kib();

    // 300 GETs of 1 MiB (300 MiB of replies) sent, none read.
    let mut s = TcpStream::connect(&proxy.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let get = common::encode_command(&["GET", "big"]);
    for _ in 0..300 {
        if s.write_all(&get).is_err() {
            break; // the proxy stopped reading from us: backpressure, as it should
        }
    }
    // The replies pile up in the master's output buffer for the proxy's connection, not in
    // the proxy: had the proxy read them into memory, the master's buffer would stay small.
    let mut rss = 0;
    wait_until(
        Duration::from_secs(30),
        "100 MiB of replies queued on the master",
        || {
            rss = rss.max(proxy.rss_kib());
            largest_output_buffer(&master) >= 100 * 1024 * 1024
        },
    );
    rss = rss.max(proxy.rss_kib());
    assert!(
        rss < baseline + 32 * 1024,
        "the proxy grew from {baseline} KiB to {rss} KiB for a client that does not read"
    );
    // The stuck client costs the others nothing.
    let mut other = proxy.client();
    assert_eq!(other.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    drop(s);
}

#[test]
fn at_the_descriptor_limit_accept_backs_off_and_recovers() {
    let master = RedisNode::master();
    // An explicit max_connections far above what 48 descriptors hold (the default would
    // fit the limit and refuse clients before the descriptors run out).
    let toml = common::proxy::config_for(
        &[master.addr()],
        &format!("max_connections = 10000\n{}", common::proxy::FAST_HEALTH),
    );
    let proxy = Proxy::start_wrapped(&toml, &[], &["prlimit", "--nofile=48:48", "--"]);
    proxy.wait_master(&master.addr());
    let mut established = proxy.client();
    assert_eq!(established.cmd_ok(&["PING"]).as_str(), Some("PONG"));

    // Far more connections than 48 descriptors allow (each session needs two).
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(s) = TcpStream::connect(&proxy.addr) {
            held.push(s);
        }
    }
    // The admin listener is out of descriptors too: watch the log, not /metrics.
    wait_until(
        Duration::from_secs(10),
        "accept errors to be logged",
        || proxy.log().contains("accept failed; backing off"),
    );
    // Backing off, not spinning: well under a core over two seconds. The sleep is the
    // measurement window: what is asserted is what does not happen in it.
    let cpu0 = proxy.cpu_time();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let used = proxy.cpu_time().saturating_sub(cpu0);
    assert!(
        used < t0.elapsed() / 2,
        "the proxy used {used:?} of CPU in {:?} at its descriptor limit",
        t0.elapsed()
    );
    // The established session is unaffected, and the master was not withdrawn.
    assert_eq!(established.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    let log = proxy.log();
    assert_eq!(log.matches("master route published").count(), 1, "{log}");
    assert!(!log.contains("route withdrawn"), "{log}");

    // Descriptors free up: new connections are served again.
    drop(held);
    wait_until(
        Duration::from_secs(20),
        "a new connection to be served",
        || {
            Client::connect(&proxy.addr)
                .map(|mut c| {
                    c.set_timeout(Some(Duration::from_secs(2)));
                    c.cmd(&["PING"])
                        .map(|r| r.as_str() == Some("PONG"))
                        .unwrap_or(false)
                })
                .unwrap_or(false)
        },
    );
    assert!(
        proxy
            .metric("redis_master_proxy_accept_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(proxy.master().as_deref(), Some(master.addr().as_str()));
}

fn raw_http(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn admin_answers_bad_requests_with_4xx_and_a_stalled_client_does_not_block_it() {
    let master = RedisNode::master();
    let proxy = Proxy::start(&[master.addr()], "");
    proxy.wait_master(&master.addr());
    let cases: &[(&[u8], &str)] = &[
        (b"GARBAGE\r\n\r\n", "400"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
        (b"GET /nope HTTP/1.1\r\n\r\n", "404"),
        (b"GET / SPDY/9\r\n\r\n", "400"),
    ];
    for (req, code) in cases {
        let resp = raw_http(&proxy.admin, req);
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {code}")),
            "{req:?} -> {resp:?}"
        );
    }
    let mut huge = b"GET /status HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let resp = raw_http(&proxy.admin, &huge);
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:?}");

    // A client that opens a request and stalls does not hold up the others.
    let mut stalled = TcpStream::connect(&proxy.admin).unwrap();
    stalled.write_all(b"GET /status HT").unwrap();
    let t = Instant::now();
    assert_eq!(proxy.http("/readyz").0, 200);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "served while another client stalls"
    );
    drop(stalled);
}

/// A backend whose name disappears from DNS while sessions are open: the route is withdrawn,
/// the sessions on it are closed, and the proxy follows the name when it comes back. The proxy
/// runs in its own mount namespace with a test-owned file bound over /etc/hosts (root only,
/// as in CI), so the name can vanish without touching the machine's resolver.
#[test]
fn backend_that_disappears_from_dns_mid_session_ends_consistently() {
    let master = RedisNode::master();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 rmp-master.test\n").unwrap();
    let backend = format!("rmp-master.test:{}", master.port());
    let toml = common::proxy::config_for(
        std::slice::from_ref(&backend),
        &format!(
            "wait_for_master = \"200ms\"\n{}",
            common::proxy::FAST_HEALTH
        ),
    );
    let script = format!(
        "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
        hosts.display()
    );
    let proxy = Proxy::start_wrapped(&toml, &[], &["unshare", "-m", "--", "sh", "-c", &script]);
    proxy.wait_master(&backend);
    let mut session = proxy.client();
    assert_eq!(session.cmd_ok(&["PING"]).as_str(), Some("PONG"));

    // The name disappears (rewritten in place: the bind mount follows the file, not the path).
    std::fs::write(&hosts, "# rmp-master.test is gone\n").unwrap();
    proxy.wait_no_master();
    let err = proxy.status()["backends"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("resolv"), "{err}");
    session.set_timeout(Some(Duration::from_secs(10)));
    assert!(
        session.cmd(&["PING"]).is_err(),
        "the session on the vanished backend is closed"
    );

    // It comes back (a restarted pod): the proxy follows the name again.
    std::fs::write(&hosts, "127.0.0.1 rmp-master.test\n").unwrap();
    proxy.wait_master(&backend);
    let mut again = proxy.client();
    assert_eq!(again.cmd_ok(&["PING"]).as_str(), Some("PONG"));
}
