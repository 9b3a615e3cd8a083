//! One wrong signal costs no write and not the endpoint: the five mishaps of the trust issue,
//! with real `redis-server` / `redis-sentinel` processes (and a fake sentinel for the liar, which
//! a real one cannot be made to be). Each test writes through the proxy on a long-lived
//! connection while the mishap happens, and checks behaviour on the nodes and in the proxy's
//! metrics: no error, no closed session, every acknowledged write on the master. The rules are in
//! `src/control/rules.md`; the timings are measured in `benches/failover`, not asserted here.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::fake_sentinel::FakeSentinel;
use common::proxy::{Proxy, FOLLOW_TIMEOUT};
use common::{
    sentinel_section, spawn_writer, wait_until, Cluster, RedisNode, Reply, Sentinels, WriterReport,
    BUSY_SCRIPT, NAME,
};

fn start_writer(proxy: &Proxy) -> (Arc<AtomicBool>, thread::JoinHandle<WriterReport>) {
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_writer(proxy.addr.clone(), "trust", stop.clone());
    (stop, w)
}

fn stop_writer(stop: Arc<AtomicBool>, w: thread::JoinHandle<WriterReport>) -> WriterReport {
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer thread")
}

/// Nothing went wrong for the application: no error reply, no broken connection, progress made,
/// and every acknowledged write is on `master`.
fn assert_untouched(r: &WriterReport, master: &RedisNode) {
    assert!(r.errors.is_empty(), "error replies: {:?}", r.errors);
    assert_eq!(r.reconnects, 0, "the writer's session was closed");
    assert!(
        r.acked.len() > 20,
        "the writer made progress: {}",
        r.acked.len()
    );
    let lost = master.missing(&r.acked);
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
}

fn uncorroborated(proxy: &Proxy) -> usize {
    proxy.status()["decisions"]["uncorroborated_promotions"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Case 1: `REPLICAOF NO ONE` on a replica by mistake, with all three sentinels naming the
/// healthy master. The proxy does not follow it, says so, and has nothing left once it is
/// reverted.
#[test]
fn accidental_promotion_is_not_followed_and_its_revert_leaves_nothing() {
    let c = Cluster::start("");
    let master = c.nodes[0].addr();
    let (stop, w) = start_writer(&c.proxy);
    c.nodes[1].promote();
    wait_until(
        FOLLOW_TIMEOUT,
        "the promotion seen and not followed",
        || uncorroborated(&c.proxy) == 1,
    );
    for _ in 0..20 {
        assert_eq!(c.proxy.master().as_deref(), Some(master.as_str()));
        thread::sleep(Duration::from_millis(50));
    }
    // Reverted (as Sentinel does some seconds later, or an operator at once).
    c.nodes[1].replicate_from(&c.nodes[0]);
    wait_until(FOLLOW_TIMEOUT, "the revert seen", || {
        uncorroborated(&c.proxy) == 0
    });
    let r = stop_writer(stop, w);
    assert_eq!(c.proxy.master().as_deref(), Some(master.as_str()));
    assert_untouched(&r, &c.nodes[0]);
    assert_eq!(
        c.proxy.metric("redis_master_proxy_master_changes_total"),
        Some(1.0),
        "the route never moved"
    );
    assert!(
        c.proxy
            .metric("redis_master_proxy_uncorroborated_promotions_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(c.proxy.log().contains("without corroboration"));
}

/// Case 2: one sentinel of three announces a failover of the healthy master again and again.
/// Its first announcement pauses the route for at most a hold; after that it is distrusted and
/// its announcements are ignored. No session is closed.
#[test]
fn lying_sentinel_is_distrusted_and_closes_nothing() {
    let m = RedisNode::master();
    let r = RedisNode::replica_of(&m);
    let real = Sentinels::start(2, NAME, &m, 2, 1000, 3000);
    real.wait_ready(1);
    let liar = FakeSentinel::start(NAME, &m.addr(), &r.addr(), Duration::from_secs(3));
    let mut addrs = real.addrs();
    addrs.push(liar.addr().to_string());
    let proxy = Proxy::start(&[m.addr(), r.addr()], &sentinel_section(&addrs));
    proxy.wait_master(&m.addr());
    proxy.wait_subscribed(3);
    let (stop, w) = start_writer(&proxy);
    wait_until(Duration::from_secs(30), "three lies told", || {
        liar.lies.load(Ordering::Relaxed) >= 3
    });
    wait_until(FOLLOW_TIMEOUT, "the liar's later events ignored", || {
        proxy
            .http("/metrics")
            .1
            .contains("redis_master_proxy_sentinel_events_ignored_total")
    });
    let report = stop_writer(stop, w);
    assert_untouched(&report, &m);
    assert_eq!(
        proxy.metric("redis_master_proxy_master_changes_total"),
        Some(1.0),
        "the route was never withdrawn"
    );
    let status = proxy.status();
    assert_eq!(status["master"]["paused"].as_bool(), Some(false));
    let distrusted = status["sentinel"]["distrusted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(distrusted.len(), 1, "{status:#}");
    assert!(distrusted[0].as_str().unwrap_or("").contains(liar.addr()));
    assert_eq!(status["sentinel"]["contradicted"][2].as_u64(), Some(1));
}

/// Case 3: a master busy in a script for longer than the check timeout (and `CLIENT PAUSE`) is
/// slow, not dead: sessions wait and resume; the one that ran the script gets its reply.
#[test]
fn slow_master_pauses_sessions_and_closes_none() {
    let m = RedisNode::master();
    let r = RedisNode::replica_of(&m);
    let proxy = Proxy::start(&[m.addr(), r.addr()], "");
    proxy.wait_master(&m.addr());
    let (stop, w) = start_writer(&proxy);
    let mut script = proxy.client();
    script.set_timeout(Some(Duration::from_secs(30)));
    let reply = script
        .cmd(&["EVAL", BUSY_SCRIPT, "0", "1500"])
        .expect("the script's session stays open");
    assert!(matches!(reply, Reply::Int(1)), "{reply:?}");
    let pauses = || {
        proxy
            .metric("redis_master_proxy_route_pauses_total{reason=\"suspect\"}")
            .unwrap_or(0.0)
    };
    let before = pauses();
    // Now the server itself holds every client, the checks included.
    m.cmd_ok(&["CLIENT", "PAUSE", "1500", "ALL"]);
    wait_until(FOLLOW_TIMEOUT, "the route to pause again", || {
        pauses() > before
    });
    wait_until(FOLLOW_TIMEOUT, "the route to resume", || {
        proxy.status()["master"]["paused"].as_bool() == Some(false)
    });
    let keys = || {
        m.cmd(&["DBSIZE"])
            .ok()
            .and_then(|r| r.as_int())
            .unwrap_or(0)
    };
    let resumed_at = keys();
    wait_until(FOLLOW_TIMEOUT, "writes to flow again", || {
        keys() > resumed_at + 50
    });
    let report = stop_writer(stop, w);
    assert_untouched(&report, &m);
    assert!(
        proxy
            .metric("redis_master_proxy_route_pauses_total{reason=\"suspect\"}")
            .unwrap_or(0.0)
            >= 1.0,
        "the slow checks paused the route"
    );
    assert_eq!(
        proxy.metric("redis_master_proxy_master_changes_total"),
        Some(1.0)
    );
    assert_eq!(
        proxy
            .metric("redis_master_proxy_connections_drained_total")
            .unwrap_or(0.0),
        0.0
    );
    assert!(matches!(script.cmd(&["PING"]), Ok(Reply::Status(_))));
}

/// Case 4: a replica restarted from its own RDB without `replicaof` boots as a master out of
/// the live master's history, with no replicas. INFO only, the route stays on the live master.
#[test]
fn replica_restarted_as_master_from_its_rdb_does_not_take_the_route() {
    let m = RedisNode::master();
    let r1 = RedisNode::replica_of(&m);
    let mut r2 = RedisNode::replica_of(&m);
    for i in 0..100 {
        m.set(&format!("k{i}"), "v");
    }
    r2.wait_synced_with(&m, Duration::from_secs(10));
    let proxy = Proxy::start(&[m.addr(), r1.addr(), r2.addr()], "");
    proxy.wait_master(&m.addr());
    let (stop, w) = start_writer(&proxy);
    r2.restart_standalone();
    let info = r2.info_replication();
    assert_eq!(info.get("role").map(String::as_str), Some("master"));
    assert_eq!(
        info.get("master_replid2"),
        m.info_replication().get("master_replid"),
        "it booted as a master out of the live master's history"
    );
    wait_until(
        FOLLOW_TIMEOUT,
        "the restarted node seen and not followed",
        || uncorroborated(&proxy) == 1,
    );
    for _ in 0..20 {
        assert_eq!(proxy.master().as_deref(), Some(m.addr().as_str()));
        thread::sleep(Duration::from_millis(50));
    }
    let report = stop_writer(stop, w);
    assert_untouched(&report, &m);
}

/// Case 5: two masters with unrelated histories; one proxy was routing to the isolated one
/// before the split, another starts after it. Both route to the same master (the one with a
/// replica), the split brain is shown, and both stay ready.
#[test]
fn split_brain_two_proxies_started_apart_choose_the_same_master() {
    let a = RedisNode::master();
    for i in 0..300 {
        a.set(&format!("a{i}"), "v");
    }
    let mut b = RedisNode::master();
    let c = RedisNode::replica_of(&b);
    b.pause(); // not there yet for the first proxy
    let backends = [a.addr(), b.addr(), c.addr()];
    let early = Proxy::start(&backends, "");
    early.wait_master(&a.addr());
    b.resume();
    early.wait_master(&b.addr());
    let late = Proxy::start(&backends, "");
    late.wait_master(&b.addr());
    for p in [&early, &late] {
        wait_until(FOLLOW_TIMEOUT, "the split brain shown", || {
            p.status()["split_brain"].as_bool() == Some(true)
        });
        assert_eq!(p.metric("redis_master_proxy_split_brain"), Some(1.0));
        assert_eq!(p.http("/readyz").0, 200, "a split brain is no outage");
        assert_eq!(p.master().as_deref(), Some(b.addr().as_str()));
    }
}
