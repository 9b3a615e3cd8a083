//! SIGHUP reloads the configuration file: backends added and removed, health settings changed,
//! while sessions that stay valid keep running; an invalid file is refused and the running
//! configuration stays.

mod common;

use std::time::Duration;

use common::proxy::{config_for, Proxy, FAST_HEALTH};
use common::{wait_until, RedisNode};

fn rewrite(proxy: &Proxy, backends: &[String], extra: &str) {
    std::fs::write(proxy.config_path(), config_for(backends, extra)).unwrap();
    proxy.signal(libc::SIGHUP);
}

fn backend_names(proxy: &Proxy) -> Vec<String> {
    proxy.status()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reload_adds_and_removes_backends_without_dropping_sessions() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let c = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr()], "");
    proxy.wait_master(&a.addr());
    let mut session = proxy.client();
    assert_eq!(session.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    let epoch = proxy.status()["master"]["epoch"].as_u64();

    // Add C, drop B, change the check interval.
    rewrite(
        &proxy,
        &[a.addr(), c.addr()],
        "[health]\ninterval = \"300ms\"\ntimeout = \"200ms\"\n",
    );
    wait_until(Duration::from_secs(10), "the reload to apply", || {
        backend_names(&proxy) == vec![a.addr(), c.addr()]
    });
    wait_until(Duration::from_secs(10), "C to be checked", || {
        proxy.status()["backends"][1]["role"].as_str() == Some("replica")
    });
    // The master did not change, so the route and the session are untouched.
    assert_eq!(proxy.status()["master"]["epoch"].as_u64(), epoch);
    assert!(session.cmd_ok(&["SET", "still", "here"]).is_ok());
    assert_eq!(a.get("still").as_deref(), Some("here"));
    assert!(proxy.log().contains("configuration reloaded"));
    assert!(
        proxy
            .metric("redis_master_proxy_config_reloads_total{result=\"ok\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn invalid_reload_is_refused_and_the_running_config_stays() {
    let a = RedisNode::master();
    let proxy = Proxy::start(&[a.addr()], "");
    proxy.wait_master(&a.addr());
    let mut session = proxy.client();
    std::fs::write(
        proxy.config_path(),
        "backends = [\"a:1\"]\n[health]\ninterval = \"soon\"\n",
    )
    .unwrap();
    proxy.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the refusal to be logged", || {
        proxy.log().contains("reload refused")
    });
    assert!(proxy.log().contains("line 3"), "the error names the line");
    assert_eq!(backend_names(&proxy), vec![a.addr()]);
    assert_eq!(proxy.master().as_deref(), Some(a.addr().as_str()));
    assert_eq!(session.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    assert_eq!(
        proxy.metric("redis_master_proxy_config_reloads_total{result=\"error\"}"),
        Some(1.0)
    );
    // A valid file afterwards is taken.
    rewrite(&proxy, &[a.addr()], FAST_HEALTH);
    wait_until(Duration::from_secs(10), "the good reload", || {
        proxy.log().contains("configuration reloaded")
    });
}

#[test]
fn reload_that_removes_the_master_moves_the_route() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = Proxy::start(&[a.addr(), b.addr()], "wait_for_master = \"200ms\"");
    proxy.wait_master(&a.addr());
    let mut session = proxy.client();
    assert_eq!(session.cmd_ok(&["PING"]).as_str(), Some("PONG"));
    rewrite(&proxy, &[b.addr()], FAST_HEALTH);
    proxy.wait_no_master();
    assert!(
        session.cmd(&["PING"]).is_err(),
        "the session on the removed master is drained"
    );
}
