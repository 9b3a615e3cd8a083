//! Tests of the integration-test harness itself: if these fail, the other integration tests
//! cannot be trusted, so they check that the real Redis processes behave as the harness says.

mod common;

use std::time::{Duration, Instant};

use common::{encode_command, wait_until, Client, RedisNode, Reply, Sentinels};

/// Master plus two replicas: a write on the master is readable on both replicas.
#[test]
fn master_and_two_replicas_replicate() {
    let master = RedisNode::master();
    let r1 = RedisNode::replica_of(&master);
    let r2 = RedisNode::replica_of(&master);
    assert_eq!(master.role(), "master");
    assert_eq!(r1.role(), "replica");
    assert_eq!(r2.role(), "replica");
    assert_ne!(r1.port(), r2.port());

    master.set("k", "v1");
    for r in [&r1, &r2] {
        r.wait_synced_with(&master, Duration::from_secs(5));
        assert_eq!(r.get("k").as_deref(), Some("v1"));
    }
    assert_eq!(master.info_replication()["connected_slaves"], "2");
}

/// The client speaks RESP2: pipelines, nil, integers, arrays and error replies.
#[test]
fn client_pipeline_and_reply_types() {
    let node = RedisNode::master();
    let mut c = Client::connect(&node.addr()).unwrap();
    let mut batch = Vec::new();
    batch.extend(encode_command(&["SET", "a", "1"]));
    batch.extend(encode_command(&["INCR", "a"]));
    batch.extend(encode_command(&["GET", "missing"]));
    batch.extend(encode_command(&["MGET", "a", "missing"]));
    batch.extend(encode_command(&["NOSUCHCOMMAND"]));
    c.send_raw(&batch).unwrap();
    assert!(c.read_reply().unwrap().is_ok());
    assert_eq!(c.read_reply().unwrap(), Reply::Int(2));
    assert!(c.read_reply().unwrap().is_nil());
    assert_eq!(
        c.read_reply().unwrap(),
        Reply::Array(vec![Reply::Bulk(Some(b"2".to_vec())), Reply::Bulk(None)])
    );
    assert!(c.read_reply().unwrap().is_error());
}

/// A password-protected master: the harness authenticates, plain clients are refused.
#[test]
fn password_protected_node() {
    let master = RedisNode::start(&["requirepass s3cret"]);
    let replica = RedisNode::replica_of(&master);
    master.set("k", "v");
    replica.wait_synced_with(&master, Duration::from_secs(5));
    assert_eq!(replica.get("k").as_deref(), Some("v"));
    let mut anon = Client::connect(&master.addr()).unwrap();
    match anon.cmd(&["GET", "k"]).unwrap() {
        Reply::Error(e) => assert!(e.starts_with("NOAUTH"), "{e}"),
        other => panic!("expected NOAUTH, got {other}"),
    }
}

/// A paused node does not answer; once resumed it does again.
#[test]
fn pause_and_resume() {
    let mut node = RedisNode::master();
    let mut c = Client::connect(&node.addr()).unwrap();
    c.set_timeout(Some(Duration::from_millis(300)));
    node.pause();
    assert!(node.is_paused());
    let err = c.cmd(&["PING"]).unwrap_err();
    assert!(err.starts_with("timed out"), "{err}");
    node.resume();
    let mut c = Client::connect(&node.addr()).unwrap();
    assert_eq!(c.cmd(&["PING"]).unwrap(), Reply::Status("PONG".into()));
}

/// A killed master refuses connections; restarted on the same port, its replica reconnects.
#[test]
fn kill_and_restart() {
    let mut master = RedisNode::master();
    let replica = RedisNode::replica_of(&master);
    let port = master.port();
    let old_pid = master.pid();
    master.kill();
    assert!(!master.is_running());
    assert!(Client::connect(&master.addr()).is_err());
    wait_until(
        Duration::from_secs(10),
        "replica to see the link down",
        || replica.info_replication()["master_link_status"] == "down",
    );

    master.restart();
    assert_eq!(master.port(), port);
    assert_ne!(master.pid(), old_pid);
    replica.wait_link_up(Duration::from_secs(15));
    master.set("after", "restart");
    replica.wait_synced_with(&master, Duration::from_secs(5));
    assert_eq!(replica.get("after").as_deref(), Some("restart"));
}

/// Swapping roles by hand: promote the replica, then make the old master follow it.
#[test]
fn promote_then_replicate_from() {
    let old_master = RedisNode::master();
    let replica = RedisNode::replica_of(&old_master);
    replica.promote();
    assert_eq!(replica.role(), "master");
    replica.set("k", "from-new-master");

    old_master.replicate_from(&replica);
    assert_eq!(old_master.role(), "replica");
    old_master.wait_synced_with(&replica, Duration::from_secs(5));
    assert_eq!(old_master.get("k").as_deref(), Some("from-new-master"));
}

/// Three sentinels: SENTINEL FAILOVER promotes one of the two replicas.
#[test]
fn sentinel_failover_promotes_a_replica() {
    let master = RedisNode::master();
    let r1 = RedisNode::replica_of(&master);
    let r2 = RedisNode::replica_of(&master);
    let sentinels = Sentinels::start(3, "mymaster", &master, 2, 1000, 3000);
    assert_eq!(sentinels.addrs().len(), 3);
    assert_eq!(
        sentinels.master_addr().as_deref(),
        Some(master.addr().as_str())
    );
    sentinels.wait_ready(2);

    let start = Instant::now();
    sentinels.failover().expect("SENTINEL FAILOVER");
    wait_until(
        Duration::from_secs(15),
        "sentinels to report a new master",
        || {
            sentinels
                .master_addr()
                .is_some_and(|a| a == r1.addr() || a == r2.addr())
        },
    );
    let new_addr = sentinels.master_addr().unwrap();
    let new_master = if new_addr == r1.addr() { &r1 } else { &r2 };
    new_master.wait_for_role("master", Duration::from_secs(10));
    sentinels.wait_master_addr(&new_addr, Duration::from_secs(10));
    eprintln!("failover to {new_addr} took {:?}", start.elapsed());
    new_master.set("k", "written-after-failover");
}
