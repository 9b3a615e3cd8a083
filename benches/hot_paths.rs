//! The control plane's and accept path's hot spots, per call.
//!
//! Decisions these inform:
//! - `info_parse`: whether parsing `INFO replication` with `redis-protocol` is cheap enough to run
//!   every 100 ms per backend during a failover (it is microseconds; the check's cost is the
//!   network round trip, not the parse).
//! - `route_load`: whether reading the route once per accepted connection (an `ArcSwap` load and
//!   an `Arc` clone) belongs on the accept path, compared with a mutex-guarded `Option<Arc<_>>`.
//! - `elect`: the election's cost per round with 3 backends.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use redis_master_proxy::election::{elect, Candidate};
use redis_master_proxy::info::{parse_info_reply, take_frame, ReplicationInfo};
use redis_master_proxy::routing::{DrainMode, RouteTable};

const MASTER_7: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.42.0.17,port=6379,state=online,offset=1234,lag=0\r\nslave1:ip=10.42.0.18,port=6379,state=online,offset=1234,lag=1\r\nmaster_failover_state:no-failover\r\nmaster_replid:5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1234\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1234\r\n";

fn info_parse(c: &mut Criterion) {
    let wire = format!("${}\r\n{}\r\n", MASTER_7.len(), MASTER_7);
    c.bench_function("info_parse/master_7", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(wire.as_bytes());
            let frame = take_frame(&mut buf).unwrap().unwrap();
            black_box(parse_info_reply(&frame).unwrap())
        })
    });
}

fn route_load(c: &mut Criterion) {
    let table = RouteTable::default();
    let addr: SocketAddr = "10.42.0.17:6379".parse().unwrap();
    table.publish(Some((Arc::from("redis-v2-0"), addr)), DrainMode::Graceful);
    let mut g = c.benchmark_group("route_load");
    g.bench_function("arc_swap", |b| b.iter(|| black_box(table.load())));
    type Target = (Arc<str>, SocketAddr);
    let locked: Mutex<Option<Arc<Target>>> =
        Mutex::new(Some(Arc::new((Arc::from("redis-v2-0"), addr))));
    g.bench_function("mutex", |b| {
        b.iter(|| black_box(locked.lock().unwrap().clone()))
    });
    g.finish();
}

fn election(c: &mut Criterion) {
    let wire = format!("${}\r\n{}\r\n", MASTER_7.len(), MASTER_7);
    let mut buf = BytesMut::from(wire.as_bytes());
    let m: ReplicationInfo = parse_info_reply(&take_frame(&mut buf).unwrap().unwrap()).unwrap();
    let mut r = m.clone();
    r.role = redis_master_proxy::info::Role::Replica;
    let cands = [
        Candidate {
            up: true,
            info: Some(&m),
        },
        Candidate {
            up: true,
            info: Some(&r),
        },
        Candidate {
            up: true,
            info: Some(&r),
        },
    ];
    c.bench_function("elect/3_backends", |b| {
        b.iter(|| black_box(elect(black_box(&cands), Some(0), None)))
    });
}

criterion_group!(benches, info_parse, route_load, election);
criterion_main!(benches);
