//! The core promises, against real `redis-server` processes: clients reach the one master;
//! the proxy follows switchovers, kills and hangs; split brains route to exactly one master;
//! sessions on a replaced master are drained and never write to it again.

mod common;

use std::thread;
use std::time::Duration;

use common::proxy::{Proxy, FOLLOW_TIMEOUT};
use common::{wait_until, Client, RedisNode, Reply};

fn ok(r: Result<Reply, String>) -> Reply {
    match r {
        Ok(Reply::Error(e)) => panic!("error reply: {e}"),
        Ok(r) => r,
        Err(e) => panic!("transport: {e}"),
    }
}

/// Every kind of traffic real clients send, through the given relay mode, data-path threads
/// and client listener mode.
fn traffic_works(relay: &str, threads: usize, mode: &str) {
    let master = RedisNode::master();
    let r1 = RedisNode::replica_of(&master);
    let r2 = RedisNode::replica_of(&master);
    // The master is listed last: config order must not matter when roles are known.
    let proxy = Proxy::start(
        &[r1.addr(), r2.addr(), master.addr()],
        // Checks that tolerate a loaded machine: this test moves 16 MiB values while two others
        // like it run, and is about traffic, not about detecting a down master.
        &format!(
            "relay = \"{relay}\"\nthreads = {threads}\nmode = \"{mode}\"\n\
             [health]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 3\n"
        ),
    );
    proxy.wait_master(&master.addr());

    let mut c = proxy.client();
    assert!(ok(c.cmd(&["SET", "greeting", "hello"])).is_ok());
    assert_eq!(ok(c.cmd(&["GET", "greeting"])).as_str(), Some("hello"));
    assert_eq!(
        master.get("greeting").as_deref(),
        Some("hello"),
        "the write reached the master"
    );

    // A pipeline of 10,000 commands, sent before reading any reply.
    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend_from_slice(&common::encode_command(&["INCR", "counter"]));
        if i % 1000 == 999 {
            c.send_raw(&batch).unwrap();
            batch.clear();
        }
    }
    for i in 1..=10_000 {
        assert_eq!(ok(c.read_reply()).as_int(), Some(i));
    }

    // A 16 MiB value both ways.
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    c.set_timeout(Some(Duration::from_secs(30)));
    assert!(ok(c.cmd_bytes(&[b"SET", b"big", &big])).is_ok());
    assert_eq!(ok(c.cmd(&["GET", "big"])).as_bytes(), Some(&big[..]));
    assert_eq!(
        ok(c.cmd(&["STRLEN", "big"])).as_int(),
        Some(big.len() as i64)
    );
    c.set_timeout(Some(Duration::from_secs(5)));

    // MULTI/EXEC.
    assert!(ok(c.cmd(&["MULTI"])).is_ok());
    assert_eq!(ok(c.cmd(&["SET", "tx", "1"])).as_str(), Some("QUEUED"));
    assert_eq!(ok(c.cmd(&["INCR", "tx"])).as_str(), Some("QUEUED"));
    let exec = ok(c.cmd(&["EXEC"]));
    assert_eq!(exec.as_array().map(|a| a.len()), Some(2));
    assert_eq!(master.get("tx").as_deref(), Some("2"));

    // Pub/sub: a subscriber through the proxy receives a message published through another.
    let mut sub = proxy.client();
    let r = ok(sub.cmd(&["SUBSCRIBE", "news"]));
    assert_eq!(r.as_array().map(|a| a.len()), Some(3));
    let mut publisher = proxy.client();
    assert_eq!(
        ok(publisher.cmd(&["PUBLISH", "news", "extra"])).as_int(),
        Some(1)
    );
    let msg = ok(sub.read_reply());
    let parts = msg.as_array().expect("message array");
    assert_eq!(parts[2].as_str(), Some("extra"));

    // BLPOP woken by a push from another connection.
    let addr = proxy.addr.clone();
    let waiter = thread::spawn(move || {
        let mut w = Client::connect(&addr).unwrap();
        w.cmd(&["BLPOP", "jobs", "10"])
    });
    wait_until(Duration::from_secs(10), "BLPOP to block", || {
        master
            .info("clients")
            .get("blocked_clients")
            .map(String::as_str)
            == Some("1")
    });
    assert_eq!(
        ok(publisher.cmd(&["RPUSH", "jobs", "job-1"])).as_int(),
        Some(1)
    );
    let popped = ok(waiter.join().unwrap());
    assert_eq!(popped.as_array().unwrap()[1].as_str(), Some("job-1"));

    // Half-close is forwarded: a client that sends and shuts down its write side still reads
    // the replies.
    let mut h = proxy.client();
    h.send_raw(&common::encode_command(&["PING"])).unwrap();
    h.shutdown_write();
    assert_eq!(ok(h.read_reply()).as_str(), Some("PONG"));
    assert!(h.read_reply().is_err(), "closed after the reply");

    if mode == "multiplex" {
        // The pipeline shared; MULTI, SUBSCRIBE and BLPOP pinned their clients.
        let shared = proxy.metric("redis_master_proxy_multiplex_commands_total");
        assert!(shared.unwrap_or(0.0) >= 10_000.0, "{shared:?}");
        let pinned = proxy.metric("redis_master_proxy_multiplex_pinned_total");
        assert!(pinned.unwrap_or(0.0) >= 3.0, "{pinned:?}");
    }
}

#[test]
fn all_traffic_kinds_reach_the_master_with_copy_relay_on_one_thread() {
    traffic_works("copy", 1, "relay");
}

#[test]
fn all_traffic_kinds_reach_the_master_with_splice_relay_on_three_workers() {
    traffic_works("splice", 3, "relay");
}

#[test]
fn all_traffic_kinds_reach_the_master_with_auto_relay_on_default_workers() {
    traffic_works("auto", 0, "relay");
}

#[test]
fn all_traffic_kinds_reach_the_master_in_multiplex_mode_on_two_workers() {
    traffic_works("auto", 2, "multiplex");
}

#[test]
fn all_traffic_kinds_reach_the_master_in_multiplex_mode_on_one_thread() {
    traffic_works("copy", 1, "multiplex");
}

/// Sentinel-style switchover seen by INFO alone: the replica is promoted while the old master
/// still says `role:master`; once the other replica follows the promoted node (rule 4, INFO
/// only), the proxy moves, drains the old sessions, and no write through it reaches the old
/// master afterwards.
#[test]
fn promoted_replica_supersedes_the_old_master_and_old_sessions_drain() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let c = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr(), c.addr()], "");
    proxy.wait_master(&a.addr());

    let mut old_session = proxy.client();
    assert!(ok(old_session.cmd(&["SET", "before", "1"])).is_ok());
    b.wait_synced_with(&a, Duration::from_secs(10));

    b.promote();
    assert_eq!(
        a.role(),
        "master",
        "the old master still claims the role, as after SENTINEL FAILOVER"
    );
    // Alone, the promotion of a node without replicas is not followed while the old master
    // keeps one: it could be a typo or a restarted pod.
    wait_until(
        Duration::from_secs(10),
        "the promotion seen and not followed",
        || {
            proxy.status()["decisions"]["uncorroborated_promotions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    assert_eq!(proxy.master().as_deref(), Some(a.addr().as_str()));
    c.replicate_from(&b);
    proxy.wait_master(&b.addr());

    // The session bound to the old master was drained: its next command does not reach A.
    let res = old_session.cmd(&["SET", "after-switch", "old-session"]);
    assert!(
        !matches!(res, Ok(Reply::Status(_))),
        "a drained session must not be acknowledged by the old master: {res:?}"
    );
    for i in 0..50 {
        let mut s = proxy.client();
        assert!(ok(s.cmd(&["SET", &format!("new-{i}"), "x"])).is_ok());
    }
    // Checked on the nodes themselves: A (still a master, not replicating) has none of it.
    assert_eq!(a.get("after-switch"), None);
    assert_eq!(a.get("new-0"), None);
    assert_eq!(a.get("new-49"), None);
    assert_eq!(b.get("new-49").as_deref(), Some("x"));
    assert!(
        proxy
            .metric("redis_master_proxy_connections_drained_total")
            .unwrap_or(0.0)
            >= 1.0
    );

    // Only later is the old master demoted; the route stays on B.
    a.replicate_from(&b);
    a.wait_for_role("slave", Duration::from_secs(10));
    wait_until(FOLLOW_TIMEOUT, "the proxy to see A demoted", || {
        proxy.status()["backends"][0]["role"].as_str() == Some("replica")
    });
    proxy.stays_on(&b.addr(), 3);
    let mut s = proxy.client();
    assert!(ok(s.cmd(&["SET", "final", "1"])).is_ok());
    assert!(proxy
        .log()
        .contains("promotion out of the master's history accepted"));
}

/// A killed master: the route is withdrawn, a client connecting in between waits, and gets a
/// working connection to the promoted replica.
#[test]
fn killed_master_withdraws_route_and_waiting_client_gets_the_new_master() {
    let mut a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr()], "wait_for_master = \"20s\"");
    proxy.wait_master(&a.addr());

    a.kill();
    proxy.wait_no_master();
    assert_eq!(proxy.http("/readyz").0, 503);

    let addr = proxy.addr.clone();
    let waiting = thread::spawn(move || {
        let mut c = Client::connect(&addr).unwrap();
        c.set_timeout(Some(Duration::from_secs(30)));
        c.cmd(&["SET", "during-failover", "1"])
    });
    // The client is connected and waiting: there is no master to relay it to.
    wait_until(FOLLOW_TIMEOUT, "the client to wait for a master", || {
        proxy.client_connections() == 1
    });
    assert!(!waiting.is_finished(), "the client did not wait");
    b.promote();
    assert!(ok(waiting.join().unwrap()).is_ok());
    assert_eq!(b.get("during-failover").as_deref(), Some("1"));
    assert_eq!(proxy.http("/readyz").0, 200);
}

/// A hung master (SIGSTOP: TCP still accepted, nothing answered) is caught by the check
/// timeout; sessions on it are closed; traffic resumes on the promoted replica, and the old
/// master waking up as `role:master` does not get the route back.
#[test]
fn paused_master_is_detected_and_does_not_win_back_the_route_on_wake() {
    let mut a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr()], "");
    proxy.wait_master(&a.addr());
    let mut stuck = proxy.client();
    assert_eq!(ok(stuck.cmd(&["PING"])).as_str(), Some("PONG"));

    a.pause();
    proxy.wait_no_master();
    let status = proxy.status();
    let err = status["backends"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("no answer"), "{err}");
    // The session bound to the hung master was closed rather than left hanging.
    stuck.set_timeout(Some(Duration::from_secs(10)));
    assert!(stuck.cmd(&["PING"]).is_err());

    b.promote();
    proxy.wait_master(&b.addr());
    let mut c = proxy.client();
    assert!(ok(c.cmd(&["SET", "k", "v"])).is_ok());

    a.resume();
    wait_until(FOLLOW_TIMEOUT, "old master to be seen up again", || {
        proxy.status()["backends"][0]["up"].as_bool() == Some(true)
    });
    proxy.stays_on(&b.addr(), 3);
    assert_eq!(a.get("k"), None);
}

/// Two masters with unrelated histories: the proxy routes to exactly one, keeps it, and counts
/// the conflict.
#[test]
fn split_brain_with_unrelated_histories_routes_to_one_and_keeps_it() {
    let a = RedisNode::master();
    let _ra = RedisNode::replica_of(&a);
    let d = RedisNode::master();
    for i in 0..100 {
        d.set(&format!("d{i}"), "x"); // a higher offset must not steal the route from A
    }
    let proxy = Proxy::start(&[d.addr(), a.addr()], "");
    proxy.wait_master(&a.addr()); // the one with a connected replica
    proxy.stays_on(&a.addr(), 5);
    assert!(
        proxy
            .metric("redis_master_proxy_split_brain_conflicts_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(proxy.status()["split_brain"], serde_json::Value::Bool(true));
    let mut c = proxy.client();
    assert!(ok(c.cmd(&["SET", "only-a", "1"])).is_ok());
    assert_eq!(a.get("only-a").as_deref(), Some("1"));
    assert_eq!(d.get("only-a"), None);
}

/// A pod that restarted empty and booted as master does not steal the route.
#[test]
fn restarted_empty_master_does_not_steal_the_route() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let mut c = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr(), c.addr()], "");
    proxy.wait_master(&a.addr());
    // C's pod restarts without its replicaof setting and without data: it boots as an empty
    // master with a history of its own (not a promotion out of A's).
    c.kill();
    let conf = c.dir().join("redis-server.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("replicaof"))
        .collect();
    std::fs::write(&conf, kept.join("\n")).unwrap();
    for entry in std::fs::read_dir(c.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rdb") {
            std::fs::remove_file(path).unwrap();
        }
    }
    c.restart();
    assert_eq!(c.role(), "master");
    wait_until(FOLLOW_TIMEOUT, "proxy to see C as a master", || {
        proxy.status()["backends"][2]["role"].as_str() == Some("master")
    });
    proxy.stays_on(&a.addr(), 3);
}

/// A backend whose host name does not resolve is down, with the reason, while the others work.
#[test]
fn unresolvable_backend_is_down_and_the_rest_work() {
    let a = RedisNode::master();
    let bogus = "no-such-redis-pod.invalid:6379".to_string();
    let proxy = Proxy::start(&[bogus.clone(), a.addr()], "");
    proxy.wait_master(&a.addr());
    let st = proxy.status();
    assert_eq!(st["backends"][0]["backend"].as_str(), Some(bogus.as_str()));
    assert_eq!(st["backends"][0]["up"].as_bool(), Some(false));
    assert!(st["backends"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot resolve"));
    let mut c = proxy.client();
    assert_eq!(ok(c.cmd(&["PING"])).as_str(), Some("PONG"));
    assert!(
        proxy
            .metric(&format!(
                "redis_master_proxy_check_failures_total{{backend=\"{bogus}\",reason=\"resolve\"}}"
            ))
            .unwrap_or(0.0)
            >= 1.0
    );
}

/// `/readyz` is 503 without a master and 200 with one; `/metrics` shows the state.
#[test]
fn readiness_and_metrics_reflect_the_state() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[b.addr()], "wait_for_master = \"200ms\"");
    // Only a replica configured: no master, not ready, clients are refused after the wait.
    wait_until(FOLLOW_TIMEOUT, "a check round", || {
        proxy.status()["check_rounds"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(proxy.http("/readyz").0, 503);
    assert_eq!(
        proxy.http("/livez").0,
        200,
        "liveness never depends on a master"
    );
    let mut c = proxy.client();
    assert!(
        c.cmd(&["PING"]).is_err(),
        "no master: closed after the wait"
    );
    assert_eq!(proxy.metric("redis_master_proxy_has_master"), Some(0.0));
    assert!(
        proxy
            .metric("redis_master_proxy_connections_refused_total{reason=\"no_master\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    b.promote();
    proxy.wait_master(&b.addr());
    assert_eq!(proxy.http("/readyz").0, 200);
    let (_, m) = proxy.http("/metrics");
    for needle in [
        "redis_master_proxy_has_master 1",
        &format!(
            "redis_master_proxy_master_info{{backend=\"{}\"}} 1",
            b.addr()
        ),
        &format!(
            "redis_master_proxy_backend_up{{backend=\"{}\"}} 1",
            b.addr()
        ),
        &format!(
            "redis_master_proxy_backend_role{{backend=\"{}\",role=\"master\"}} 1",
            b.addr()
        ),
        "redis_master_proxy_check_duration_seconds_bucket",
        "redis_master_proxy_master_changes_total",
        "redis_master_proxy_client_connections_total",
        "redis_master_proxy_client_connections_active",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    assert_eq!(proxy.http("/nope").0, 404);
}

/// SIGTERM: not ready, sessions drained, exit 0.
#[test]
fn sigterm_drains_sessions_and_exits_zero() {
    sigterm_drains(0);
}

#[test]
fn sigterm_drains_sessions_and_exits_zero_on_one_thread() {
    sigterm_drains(1);
}

fn sigterm_drains(threads: usize) {
    let a = RedisNode::master();
    let mut proxy = Proxy::start(
        &[a.addr()],
        &format!("shutdown_grace = \"5s\"\nthreads = {threads}"),
    );
    proxy.wait_master(&a.addr());
    let mut c = proxy.client();
    assert_eq!(ok(c.cmd(&["PING"])).as_str(), Some("PONG"));
    let status = proxy.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        c.cmd(&["PING"]).is_err(),
        "session closed by the shutdown drain"
    );
    assert!(proxy.log().contains("shutting down"));
}

/// SIGTERM with a session that is still waiting for its reply when the grace period ends (a
/// BLPOP, whose drain would last `drain_timeout`): the process closes it and exits 0 at the end
/// of the grace period instead of waiting for the drain.
#[test]
fn sigterm_closes_sessions_left_after_the_grace_period() {
    let a = RedisNode::master();
    let mut proxy = Proxy::start(
        &[a.addr()],
        "shutdown_grace = \"500ms\"\ndrain_timeout = \"60s\"",
    );
    proxy.wait_master(&a.addr());
    let mut c = proxy.client();
    c.set_timeout(Some(Duration::from_secs(20)));
    c.send_raw(&common::encode_command(&["BLPOP", "never", "0"]))
        .unwrap();
    wait_until(Duration::from_secs(10), "BLPOP to block", || {
        a.info("clients").get("blocked_clients").map(String::as_str) == Some("1")
    });
    let status = proxy.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(c.read_reply().is_err(), "the blocked session was closed");
    assert!(proxy.log().contains("grace period over"), "{}", proxy.log());
}

/// Pub/sub and blocked (BLPOP) sessions on a replaced master are closed, so clients resubscribe
/// or retry against the new master instead of waiting on a node that no longer gets writes.
#[test]
fn pubsub_and_blocked_sessions_are_closed_on_a_switch() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr()], "drain_timeout = \"1s\"");
    proxy.wait_master(&a.addr());
    let mut sub = proxy.client();
    assert_eq!(
        ok(sub.cmd(&["SUBSCRIBE", "events"]))
            .as_array()
            .map(|x| x.len()),
        Some(3)
    );
    let addr = proxy.addr.clone();
    let blocked = thread::spawn(move || {
        let mut w = Client::connect(&addr).unwrap();
        w.set_timeout(Some(Duration::from_secs(20)));
        w.cmd(&["BLPOP", "queue", "0"])
    });
    wait_until(Duration::from_secs(10), "BLPOP to block", || {
        a.info("clients").get("blocked_clients").map(String::as_str) == Some("1")
    });

    b.promote();
    proxy.wait_master(&b.addr());
    sub.set_timeout(Some(Duration::from_secs(10)));
    assert!(
        sub.read_reply().is_err(),
        "the subscriber's session is closed"
    );
    assert!(
        blocked.join().unwrap().is_err(),
        "the blocked session is closed, not left waiting"
    );

    // Clients that come back land on the new master and work.
    let mut sub2 = proxy.client();
    assert_eq!(
        ok(sub2.cmd(&["SUBSCRIBE", "events"]))
            .as_array()
            .map(|x| x.len()),
        Some(3)
    );
    let mut p = proxy.client();
    assert_eq!(ok(p.cmd(&["PUBLISH", "events", "hello"])).as_int(), Some(1));
    assert_eq!(
        ok(sub2.read_reply()).as_array().unwrap()[2].as_str(),
        Some("hello")
    );
}

/// A switchover, then the new master dies before the old one is demoted (a rolling restart):
/// the old master still says `role:master`, and the node promoted next is related to it only
/// through the dead one. The proxy remembers that the old history was left and never routes
/// back to it.
#[test]
fn old_master_stays_superseded_after_its_successor_dies() {
    let a = RedisNode::master();
    let mut b = RedisNode::replica_of(&a);
    let c = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr(), c.addr()], "wait_for_master = \"10s\"");
    proxy.wait_master(&a.addr());
    // Give A the higher offset, so the offset rule alone would pick it.
    for i in 0..200 {
        a.set(&format!("a{i}"), "x");
    }
    c.wait_synced_with(&a, Duration::from_secs(10));
    b.wait_synced_with(&a, Duration::from_secs(10));

    b.promote();
    c.replicate_from(&b);
    proxy.wait_master(&b.addr());
    c.wait_link_up(Duration::from_secs(10));
    // B dies; A was never demoted and still claims the role.
    b.kill();
    proxy.wait_no_master();
    c.promote();
    proxy.wait_master(&c.addr());
    proxy.stays_on(&c.addr(), 5);
    assert_eq!(a.role(), "master", "the old master still claims the role");
    let mut s = proxy.client();
    assert!(ok(s.cmd(&["SET", "after", "1"])).is_ok());
    assert_eq!(a.get("after"), None);
}
