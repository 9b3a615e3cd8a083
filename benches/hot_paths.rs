//! The control plane's and accept path's hot spots, per call.
//!
//! Decisions these inform:
//! - `info_parse`: whether parsing `INFO replication` with `redis-protocol` is cheap enough to run
//!   every 100 ms per backend during a failover (it is microseconds; the check's cost is the
//!   network round trip, not the parse).
//! - `route_load`: whether reading the route once per accepted connection (an `ArcSwap` load and
//!   an `Arc` clone) belongs on the accept path, compared with a mutex-guarded `Option<Arc<_>>`.
//! - `decide`: the state machine's cost per check result with 3 backends and 3 sentinels (it
//!   runs for every check result, 20 times a second per backend during a failover).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use redis_master_proxy::control::machine::{Answer, Input, Machine, Named, Outcome, Params};
use redis_master_proxy::redis::info::{parse_info_reply, ReplicationInfo};
use redis_master_proxy::redis::resp::take_frame;
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

fn decide(c: &mut Criterion) {
    let wire = format!("${}\r\n{}\r\n", MASTER_7.len(), MASTER_7);
    let mut buf = BytesMut::from(wire.as_bytes());
    let m: ReplicationInfo = parse_info_reply(&take_frame(&mut buf).unwrap().unwrap()).unwrap();
    let mut r = m.clone();
    r.role = redis_master_proxy::redis::info::Role::Replica;
    let names: Vec<Arc<str>> = ["a:1", "b:1", "c:1"].into_iter().map(Arc::from).collect();
    let params = Params {
        rise: 2,
        fall: 1,
        down_after: std::time::Duration::from_secs(10),
        sentinels: 3,
    };
    let mut machine = Machine::new(names, params);
    let t0 = std::time::Instant::now();
    let addr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let check = |i: usize, info: &ReplicationInfo| Input::Check {
        backend: i,
        addr: Some(addr),
        outcome: Outcome::Reply(info.clone()),
        latency: std::time::Duration::from_micros(200),
    };
    let named = Answer::Names(Named {
        label: "a:1".into(),
        backend: Some(0),
    });
    machine.handle(Input::SentinelAnswers(vec![named.clone(); 3]), t0);
    for (i, info) in [&m, &r, &r].into_iter().enumerate() {
        machine.handle(check(i, info), t0);
    }
    let mut k = 0usize;
    c.bench_function("decide/3_backends_3_sentinels", |b| {
        b.iter(|| {
            k += 1;
            let info = if k % 3 == 0 { &m } else { &r };
            black_box(machine.handle(black_box(check(k % 3, info)), t0))
        })
    });
}

criterion_group!(benches, info_parse, route_load, decide);
criterion_main!(benches);
