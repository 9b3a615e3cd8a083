//! The sentinel listener (`sentinel.listen`), HAProxy's second frontend: Sentinel clients are
//! relayed to a sentinel that answers, and to another one when it dies.

mod common;

use std::time::Duration;

use common::proxy::{Proxy, FOLLOW_TIMEOUT};
use common::{wait_for, wait_until, Client, RedisNode, Reply, Sentinels};

const NAME: &str = "mymaster";

/// The sentinel a connection through the listener reached, by its port (`INFO server`).
fn reached_port(addr: &str) -> Option<u16> {
    let mut c = Client::connect_timeout(addr, Duration::from_secs(2)).ok()?;
    c.set_timeout(Some(Duration::from_secs(2)));
    let info = c.cmd(&["INFO", "server"]).ok()?;
    let text = info.as_string()?;
    let map = common::parse_info(&text);
    if map.get("redis_mode").map(String::as_str) != Some("sentinel") {
        return None;
    }
    map.get("tcp_port")?.parse().ok()
}

#[test]
fn sentinel_clients_reach_a_live_sentinel_and_move_when_it_dies() {
    let master = RedisNode::master();
    let mut sentinels = Sentinels::start(3, NAME, &master, 2, 60_000, 180_000);
    let addrs: Vec<String> = sentinels
        .addrs()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let proxy = Proxy::start(
        &[master.addr()],
        &format!(
            "[sentinel]\naddresses = [{}]\nmaster_name = \"{NAME}\"\nlisten = \"127.0.0.1:0\"\n\
             check_interval = \"200ms\"\ncheck_timeout = \"150ms\"\n",
            addrs.join(", ")
        ),
    );
    let listen = wait_for(
        FOLLOW_TIMEOUT,
        "the sentinel listener to have a route",
        || {
            let st = proxy.status();
            let l = &st["sentinel_listener"];
            l["current"].as_str()?;
            l["listen"].as_str().map(str::to_string)
        },
    );

    // A Sentinel client's first question, answered through the listener.
    let mut c = Client::connect(&listen).unwrap();
    let reply = c.cmd_ok(&["SENTINEL", "get-master-addr-by-name", NAME]);
    let want = [
        Reply::Bulk(Some(b"127.0.0.1".to_vec())),
        Reply::Bulk(Some(master.port().to_string().into_bytes())),
    ];
    assert_eq!(reply.as_array(), Some(&want[..]), "{reply:?}");

    // Kill the sentinel it reached: a new connection reaches another one, and still answers.
    let first = reached_port(&listen).expect("reached a sentinel");
    let i = (0..sentinels.len())
        .find(|&i| sentinels.addr(i).ends_with(&format!(":{first}")))
        .expect("one of ours");
    sentinels.kill(i);
    let next = wait_for(
        FOLLOW_TIMEOUT,
        "a connection to reach another sentinel",
        || reached_port(&listen).filter(|&p| p != first),
    );
    assert!(sentinels
        .addrs()
        .iter()
        .any(|a| a.ends_with(&format!(":{next}"))));
    let mut c = Client::connect(&listen).unwrap();
    let reply = c.cmd_ok(&["SENTINEL", "get-master-addr-by-name", NAME]);
    assert_eq!(reply.as_array(), Some(&want[..]), "{reply:?}");
    wait_until(FOLLOW_TIMEOUT, "the dead sentinel shown down", || {
        proxy.status()["sentinel_listener"]["sentinels"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["sentinel"].as_str() == Some(&sentinels.addr(i)) && s["up"] == false)
    });
}
