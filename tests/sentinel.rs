//! Failover with real sentinels: a master, two replicas and three `redis-sentinel` processes
//! (quorum 2, down-after 1000 ms, failover-timeout 3000 ms), and the proxy in front with both
//! sources. In every mode the proxy ends on the new master and never routes to the old one
//! again; during a planned switchover no write acknowledged through the proxy is lost.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, FOLLOW_TIMEOUT};
use common::{spawn_writer, wait_until, Cluster, RedisNode, Sentinels, NAME};

fn cluster() -> Cluster {
    Cluster::start("wait_for_master = \"10s\"\n")
}

fn addr_of(nodes: &[RedisNode], addr: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.addr() == addr)
        .expect("a known node")
}

/// Watches the route for `dur` and fails if it ever points at `old`. The sleep between looks
/// is the point: what is asserted is what does not happen in the window.
fn never_routes_to(proxy: &Proxy, old: &str, dur: Duration) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        assert_ne!(
            proxy.master().as_deref(),
            Some(old),
            "routed back to the old master"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Keys on `node` (0 when it does not answer).
fn dbsize(node: &RedisNode) -> i64 {
    node.cmd(&["DBSIZE"])
        .ok()
        .and_then(|r| r.as_int())
        .unwrap_or(0)
}

#[test]
fn planned_switchover_loses_no_acknowledged_write() {
    let c = cluster();
    let old = c.nodes[0].addr();
    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_writer(c.proxy.addr.clone(), "probe", stop.clone());
    wait_until(FOLLOW_TIMEOUT, "writes through the proxy", || {
        dbsize(&c.nodes[0]) >= 20
    });

    c.sentinels.failover().expect("SENTINEL FAILOVER");
    let new = common::wait_for(FOLLOW_TIMEOUT, "sentinels to switch", || {
        c.sentinels.master_addr().filter(|a| *a != old)
    });
    c.proxy.wait_master(&new);
    let new_node = &c.nodes[addr_of(&c.nodes, &new)];
    let before = dbsize(new_node);
    wait_until(FOLLOW_TIMEOUT, "writes on the new master", || {
        dbsize(new_node) >= before + 20
    });
    stop.store(true, Ordering::Relaxed);
    let acked = w.join().unwrap().acked;
    assert!(
        acked.len() > 20,
        "the writer made progress: {}",
        acked.len()
    );

    // Every acknowledged write is on the final master.
    let lost = c.nodes[addr_of(&c.nodes, &new)].missing(&acked);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        c.proxy.log().contains("failover under way"),
        "the sentinel event held the old master"
    );
    never_routes_to(&c.proxy, &old, Duration::from_secs(2));
}

#[test]
fn killed_master_is_replaced_by_the_sentinels_choice() {
    let mut c = cluster();
    let old = c.nodes[0].addr();
    c.nodes[0].kill();
    c.proxy.wait_no_master();
    let new = common::wait_for(
        Duration::from_secs(30),
        "sentinels to promote a replica",
        || c.sentinels.master_addr().filter(|a| *a != old),
    );
    c.proxy.wait_master(&new);
    let mut cl = c.proxy.client();
    assert!(cl.cmd_ok(&["SET", "after-kill", "1"]).is_ok());
    assert_eq!(
        c.nodes[addr_of(&c.nodes, &new)]
            .get("after-kill")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn hung_master_waking_up_never_gets_the_route_back() {
    let mut c = cluster();
    let old = c.nodes[0].addr();
    c.nodes[0].pause();
    // Slow is not dead: the route is paused (sessions wait) until the failover is seen.
    wait_until(FOLLOW_TIMEOUT, "the route to pause", || {
        c.proxy.status()["master"]["paused"].as_bool() == Some(true)
    });
    let new = common::wait_for(
        Duration::from_secs(30),
        "sentinels to promote a replica",
        || c.sentinels.master_addr().filter(|a| *a != old),
    );
    c.proxy.wait_master(&new);
    c.nodes[0].resume();
    // It wakes up still saying role:master (until the sentinels demote it).
    never_routes_to(&c.proxy, &old, Duration::from_secs(4));
    c.nodes[0].wait_for_role("slave", Duration::from_secs(30));
    assert_eq!(c.proxy.master().as_deref(), Some(new.as_str()));
    let mut cl = c.proxy.client();
    assert!(cl.cmd_ok(&["SET", "after-wake", "1"]).is_ok());
    assert_eq!(
        c.nodes[addr_of(&c.nodes, &new)]
            .get("after-wake")
            .as_deref(),
        Some("1")
    );
}

/// Sentinels whose state drifted name a replica: the proxy keeps the INFO choice and says so.
#[test]
fn drifted_sentinels_naming_a_replica_do_not_move_the_route() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    // These sentinels believe the replica B is the master (long down-after: no failover of it).
    let drifted = Sentinels::start(3, NAME, &b, 2, 60_000, 180_000);
    let addrs: Vec<String> = drifted.addrs().iter().map(|x| format!("\"{x}\"")).collect();
    let proxy = Proxy::start(
        &[a.addr(), b.addr()],
        &format!(
            "[sentinel]\naddresses = [{}]\nmaster_name = \"{NAME}\"\n",
            addrs.join(", ")
        ),
    );
    proxy.wait_master(&a.addr());
    wait_until(FOLLOW_TIMEOUT, "the disagreement to be exposed", || {
        proxy.status()["sentinel"]["disagrees"].as_bool() == Some(true)
    });
    assert_eq!(
        proxy.status()["sentinel"]["backend"].as_str(),
        Some(b.addr().as_str())
    );
    never_routes_to(&proxy, &b.addr(), Duration::from_secs(1));
    assert!(
        proxy
            .metric("redis_master_proxy_sentinel_disagreements_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(proxy.log().contains("do not confirm"));
}

/// With every sentinel gone, INFO-only election still follows a manual switchover (a replica
/// promoted, the other replica moved under it).
#[test]
fn without_sentinels_info_election_still_follows_a_promotion() {
    let mut c = cluster();
    for i in 0..3 {
        c.sentinels.kill(i);
    }
    wait_until(FOLLOW_TIMEOUT, "sentinels to be seen unreachable", || {
        c.proxy.status()["sentinel"]["reachable"].as_u64() == Some(0)
    });
    c.nodes[1].promote();
    c.nodes[2].replicate_from(&c.nodes[1]);
    c.proxy.wait_master(&c.nodes[1].addr());
    c.nodes[0].replicate_from(&c.nodes[1]);
    let mut cl = c.proxy.client();
    assert!(cl.cmd_ok(&["SET", "info-only", "1"]).is_ok());
    assert_eq!(c.nodes[1].get("info-only").as_deref(), Some("1"));
}

/// A reload in the middle of a failover ends on the new master, with the new settings.
#[test]
fn sighup_during_a_failover_ends_on_the_new_master() {
    let c = cluster();
    let old = c.nodes[0].addr();
    c.sentinels.failover().expect("SENTINEL FAILOVER");
    // Reload at once, with a slower check interval, while the failover runs.
    let text = std::fs::read_to_string(c.proxy.config_path()).unwrap();
    std::fs::write(
        c.proxy.config_path(),
        text.replace("interval = \"200ms\"", "interval = \"300ms\""),
    )
    .unwrap();
    c.proxy.signal(libc::SIGHUP);
    let new = common::wait_for(FOLLOW_TIMEOUT, "sentinels to switch", || {
        c.sentinels.master_addr().filter(|a| *a != old)
    });
    c.proxy.wait_master(&new);
    wait_until(FOLLOW_TIMEOUT, "the reload", || {
        c.proxy.log().contains("configuration reloaded")
    });
    never_routes_to(&c.proxy, &old, Duration::from_secs(1));
    let mut cl = c.proxy.client();
    assert!(cl.cmd_ok(&["SET", "after-reload", "1"]).is_ok());
    assert!(!c.proxy.log().contains("panicked"));
}

/// SIGTERM in the middle of a failover: a clean exit, status 0, nothing left hanging.
#[test]
fn sigterm_during_a_failover_exits_cleanly() {
    let mut c = cluster();
    let mut session = c.proxy.client();
    assert_eq!(session.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    c.sentinels.failover().expect("SENTINEL FAILOVER");
    wait_until(FOLLOW_TIMEOUT, "the failover to reach the proxy", || {
        c.proxy.log().contains("failover under way")
    });
    let status = c.proxy.terminate();
    assert!(status.success(), "{status:?}");
    assert!(session.cmd(&["PING"]).is_err());
    let log = c.proxy.log();
    assert!(log.contains("stopped"), "the shutdown sequence completed");
    assert!(!log.contains("panicked"));
}
