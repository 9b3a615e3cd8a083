//! The admin listener under abuse: the probes answer while a thousand idle and trickling
//! connections are held open against it, `HEAD` has no body, and stalled connections are
//! closed by the proxy rather than held forever.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{wait_until, RedisNode};

/// The kubelet's probe timeout in the shipped manifests (`timeoutSeconds: 1`): a probe that
/// takes longer fails, which is the behaviour this file guards against.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One probe as the kubelet makes it: connect, `GET`, read the whole answer, all within
/// [`PROBE_TIMEOUT`]. Returns the status code and how long it took.
fn probe(addr: &str, path: &str) -> Result<(u16, Duration), String> {
    let t = Instant::now();
    let sock = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).ok();
    s.set_write_timeout(Some(PROBE_TIMEOUT)).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.30\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if took > PROBE_TIMEOUT {
        return Err(format!("answered after {took:?}"));
    }
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response {resp:?}"))?;
    Ok((code, took))
}

/// Holds `idle` connections that send nothing and `slow` ones that send one byte of a request
/// head a second, reopening any the proxy closes, until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<usize>>,
}

impl Flood {
    fn start(addr: &str, idle: usize, slow: usize) -> Flood {
        let addr = addr.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            let open = || {
                let s = TcpStream::connect(&addr).ok()?;
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            // (socket, is_slow, bytes of the head sent so far, last write)
            let mut conns: Vec<(Option<TcpStream>, bool, usize, Instant)> = (0..idle + slow)
                .map(|i| (open(), i >= idle, 0, Instant::now()))
                .collect();
            let _ = ready_tx.send(());
            let head = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n";
            let mut reopened = 0;
            while !stop2.load(Ordering::Relaxed) {
                for c in conns.iter_mut() {
                    let closed = match &mut c.0 {
                        None => true,
                        Some(s) => {
                            let mut b = [0u8; 512];
                            match s.read(&mut b) {
                                Ok(_) => true, // EOF or an answer (408-like): reopen
                                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                                Err(_) => true,
                            }
                        }
                    };
                    if closed {
                        *c = (open(), c.1, 0, Instant::now());
                        reopened += 1;
                        continue;
                    }
                    // Never complete the head: stop one byte short of it.
                    if c.1 && c.3.elapsed() >= Duration::from_secs(1) && c.2 < head.len() - 1 {
                        if let Some(s) = &mut c.0 {
                            let _ = s.write(&head[c.2..c.2 + 1]);
                        }
                        c.2 += 1;
                        c.3 = Instant::now();
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
            reopened
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(30));
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the flood; returns how many connections were reopened after the proxy closed them.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn probes_answer_while_a_thousand_idle_and_trickling_connections_are_open() {
    let master = RedisNode::master();
    let proxy = Proxy::start(&[master.addr()], "");
    proxy.wait_master(&master.addr());
    let fds_before = proxy.fd_count();

    let flood = Flood::start(&proxy.admin, 500, 500);
    wait_until(Duration::from_secs(10), "the flood to be accepted", || {
        proxy.fd_count() >= fds_before + 900
    });
    // Probe for five seconds: through the first connections' header timeout and the flood
    // reopening them, as a port scan or a stuck scraper keeps doing.
    let mut took = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        for path in ["/livez", "/readyz"] {
            match probe(&proxy.admin, path) {
                Ok((code, t)) => {
                    assert_eq!(code, 200, "{path}");
                    took.push(t);
                }
                Err(e) => panic!("{path} failed while flooded: {e}"),
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let reopened = flood.stop();
    took.sort();
    eprintln!(
        "{} probes under a flood of 1,000 connections: median {:?}, max {:?}; {} flood \
         connections closed by the proxy and reopened",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1],
        reopened
    );
    assert!(
        reopened >= 500,
        "the proxy closes connections that never complete a head ({reopened} reopened)"
    );
    // Once the flood stops, its descriptors are given back.
    wait_until(
        Duration::from_secs(15),
        "flood descriptors released",
        || proxy.fd_count() <= fds_before + 5,
    );
}

#[test]
fn head_answers_without_a_body_and_other_methods_are_refused() {
    let master = RedisNode::master();
    let proxy = Proxy::start(&[master.addr()], "");
    proxy.wait_master(&master.addr());
    for path in ["/livez", "/readyz", "/metrics", "/status"] {
        let mut s = TcpStream::connect(&proxy.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp:?}");
        let (_, body) = resp.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "", "HEAD {path} carries no body");
        assert!(
            resp.to_ascii_lowercase().contains("content-length: "),
            "{resp:?}"
        );
    }
    let mut s = TcpStream::connect(&proxy.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"DELETE /status HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp:?}");
}
