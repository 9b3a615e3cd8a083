//! Round trips of payloads through the proxy over loopback, per relay mode, against a direct
//! connection to the same echo backend.
//!
//! Decision this informs: which relay mode `auto` should use when. A payload is written by the
//! client, relayed to an echo backend, echoed, and relayed back; the time is one full round trip.
//! At 32 B and 4 KiB the copy path should win (one read and one write per chunk, where splice
//! needs two splices); at 64 KiB and 1 MiB splice avoids copying through userspace. `auto` should
//! track the better of the two at every size. The direct connection is the floor.
//!
//! The backend is a small in-process echo server that answers the health check's
//! `INFO replication` as a master, so the proxy's own cost is what differs between candidates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redis_master_proxy::app;
use redis_master_proxy::config::{Config, Overrides, Placement};
use redis_master_proxy::data::workers::Workers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INFO_MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:0\r\n";

/// Echo server that answers the health check as a master.
async fn echo_backend(l: tokio::net::TcpListener) {
    while let Ok((mut s, _)) = l.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            if buf[..n].starts_with(b"*2\r\n$4\r\nINFO") {
                let reply = format!("${}\r\n{}\r\n", INFO_MASTER.len(), INFO_MASTER);
                let _ = s.write_all(reply.as_bytes()).await;
                return;
            }
            if s.write_all(&buf[..n]).await.is_err() {
                return;
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// A client connection with a reader thread, so large payloads never deadlock on full buffers.
struct EchoClient {
    w: TcpStream,
    want: mpsc::Sender<usize>,
    done: mpsc::Receiver<()>,
}

impl EchoClient {
    fn connect(addr: SocketAddr) -> EchoClient {
        let w = TcpStream::connect(addr).unwrap();
        w.set_nodelay(true).unwrap();
        let mut r = w.try_clone().unwrap();
        let (want_tx, want_rx) = mpsc::channel::<usize>();
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(mut n) = want_rx.recv() {
                while n > 0 {
                    match r.read(&mut buf[..n.min(256 * 1024)]) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n -= k,
                    }
                }
                if done_tx.send(()).is_err() {
                    return;
                }
            }
        });
        EchoClient {
            w,
            want: want_tx,
            done: done_rx,
        }
    }

    fn round_trip(&mut self, payload: &[u8]) {
        self.want.send(payload.len()).unwrap();
        self.w.write_all(payload).unwrap();
        self.done.recv_timeout(Duration::from_secs(30)).unwrap();
    }
}

fn relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(echo_backend(l));
        a
    });
    let mut candidates: Vec<(&str, SocketAddr)> = vec![("direct", backend)];
    let mut stops = Vec::new();
    for mode in ["copy", "splice", "auto"] {
        let text = format!(
            "backends = [\"{backend}\"]\nrelay = \"{mode}\"\n[health]\ninterval = \"1s\"\n"
        );
        let cfg = Config::parse(&text, "bench", &Overrides::default()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let addr = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            // Sessions on a data-path worker thread, as in the binary.
            let workers = Workers::start(1, Placement::Host).unwrap();
            tokio::spawn(app::run(cfg, l, admin, workers, rx));
            a
        });
        stops.push(tx);
        candidates.push((mode, addr));
    }
    // Connect only once the proxies have a route (a client arriving earlier would wait for it).
    thread::sleep(Duration::from_millis(300));

    let mut g = c.benchmark_group("relay_round_trip");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    for size in [32usize, 4 * 1024, 64 * 1024, 1024 * 1024] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64 * 2));
        for (name, addr) in &candidates {
            let mut client = EchoClient::connect(*addr);
            g.bench_with_input(BenchmarkId::new(*name, size), &payload, |b, p| {
                b.iter(|| client.round_trip(p))
            });
        }
    }
    g.finish();
    drop(stops);
}

criterion_group!(benches, relay);
criterion_main!(benches);
