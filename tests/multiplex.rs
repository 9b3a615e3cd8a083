//! `mode = "multiplex"` against real `redis-server` processes: many clients share a few backend
//! connections and each gets its own replies in order; everything with connection state pins
//! its client and works as directly; failovers, pauses and a master that needs `AUTH` keep the
//! 1:1 relay's promises. (`tests/core.rs` runs every traffic kind through this mode too.)

mod common;

use std::thread;
use std::time::Duration;

use common::proxy::{config_for, Proxy, FAST_HEALTH, FOLLOW_TIMEOUT};
use common::{encode_command, wait_until, Client, RedisNode, Reply, BUSY_SCRIPT};

fn ok(r: Result<Reply, String>) -> Reply {
    match r {
        Ok(Reply::Error(e)) => panic!("error reply: {e}"),
        Ok(r) => r,
        Err(e) => panic!("transport: {e}"),
    }
}

fn multiplex(backends: &[String], extra: &str) -> Proxy {
    Proxy::start(backends, &format!("mode = \"multiplex\"\n{extra}"))
}

fn pinned(proxy: &Proxy) -> f64 {
    proxy
        .metric("redis_master_proxy_multiplex_pinned_total")
        .unwrap_or(0.0)
}

fn shared(proxy: &Proxy) -> f64 {
    proxy
        .metric("redis_master_proxy_multiplex_commands_total")
        .unwrap_or(0.0)
}

fn resp3_shared(proxy: &Proxy) -> f64 {
    proxy
        .metric("redis_master_proxy_multiplex_resp3_commands_total")
        .unwrap_or(0.0)
}

/// Connections the master has open from its normal clients (checks and shared connections).
fn master_clients(master: &RedisNode) -> usize {
    master
        .info("clients")
        .get("connected_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Forty clients on two threads each send pipelines of interleaved writes and reads of their
/// own keys; every reply is the one its command expects, in order, while the master sees a
/// handful of connections.
#[test]
fn many_clients_pipelines_interleave_and_each_gets_its_replies_in_order() {
    let master = RedisNode::master();
    let proxy = multiplex(&[master.addr()], "threads = 2");
    proxy.wait_master(&master.addr());
    let clients: Vec<_> = (0..40)
        .map(|i| {
            let addr = proxy.addr.clone();
            thread::spawn(move || {
                let mut c = Client::connect(&addr).unwrap();
                c.set_timeout(Some(Duration::from_secs(30)));
                let key = format!("client-{i}");
                for round in 0..5 {
                    let mut batch = Vec::new();
                    for j in 0..200 {
                        let v = format!("{i}-{round}-{j}");
                        batch.extend_from_slice(&encode_command(&["SET", &key, &v]));
                        batch.extend_from_slice(&encode_command(&["GET", &key]));
                        batch.extend_from_slice(&encode_command(&["INCR", &format!("{key}-n")]));
                    }
                    c.send_raw(&batch).unwrap();
                    for j in 0..200 {
                        let v = format!("{i}-{round}-{j}");
                        assert!(ok(c.read_reply()).is_ok());
                        assert_eq!(ok(c.read_reply()).as_str(), Some(v.as_str()));
                        assert_eq!(
                            ok(c.read_reply()).as_int(),
                            Some(round * 200 + j + 1),
                            "client {i}"
                        );
                    }
                }
                c
            })
        })
        .collect();
    let clients: Vec<Client> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    // 40 clients are connected; the master sees the checks and at most 2 shared connections
    // per thread.
    let seen = master_clients(&master);
    assert!(
        seen < 12,
        "the master sees {seen} connections for 40 clients"
    );
    assert!(shared(&proxy) >= 40.0 * 5.0 * 600.0);
    assert_eq!(pinned(&proxy), 0.0);
    drop(clients);
}

/// Commands with connection state pin their client to a connection of its own, where they
/// behave as directly; commands without it do not pin.
#[test]
fn connection_state_pins_and_works() {
    let master = RedisNode::master();
    let proxy = multiplex(&[master.addr()], "");
    proxy.wait_master(&master.addr());

    // Plain commands, PING, ECHO, SELECT 0: no pin.
    let mut plain = proxy.client();
    assert!(ok(plain.cmd(&["SET", "k", "v"])).is_ok());
    assert_eq!(ok(plain.cmd(&["PING"])).as_str(), Some("PONG"));
    assert_eq!(ok(plain.cmd(&["ECHO", "e"])).as_str(), Some("e"));
    assert!(ok(plain.cmd(&["SELECT", "0"])).is_ok());
    assert_eq!(ok(plain.cmd(&["GET", "k"])).as_str(), Some("v"));
    assert_eq!(pinned(&proxy), 0.0);

    // SELECT 1: the client's later commands run in database 1.
    let mut db1 = proxy.client();
    assert!(ok(db1.cmd(&["SET", "k", "zero"])).is_ok());
    assert!(ok(db1.cmd(&["SELECT", "1"])).is_ok());
    assert!(ok(db1.cmd(&["SET", "k", "one"])).is_ok());
    assert_eq!(ok(db1.cmd(&["GET", "k"])).as_str(), Some("one"));
    assert_eq!(ok(plain.cmd(&["GET", "k"])).as_str(), Some("zero"));
    let mut direct = master.client().unwrap();
    ok(direct.cmd(&["SELECT", "1"]));
    assert_eq!(ok(direct.cmd(&["GET", "k"])).as_str(), Some("one"));
    assert_eq!(pinned(&proxy), 1.0);

    // CLIENT SETNAME: the name stays with the client's connection.
    let mut named = proxy.client();
    assert!(ok(named.cmd(&["CLIENT", "SETNAME", "worker-7"])).is_ok());
    assert_eq!(
        ok(named.cmd(&["CLIENT", "GETNAME"])).as_str(),
        Some("worker-7")
    );
    assert!(ok(named.cmd(&["SET", "after-name", "1"])).is_ok());
    assert_eq!(pinned(&proxy), 2.0);

    // MULTI/EXEC with WATCH, after plain commands on the same client.
    let mut tx = proxy.client();
    assert!(ok(tx.cmd(&["SET", "balance", "10"])).is_ok());
    assert!(ok(tx.cmd(&["WATCH", "balance"])).is_ok());
    assert!(ok(tx.cmd(&["MULTI"])).is_ok());
    assert_eq!(
        ok(tx.cmd(&["INCRBY", "balance", "5"])).as_str(),
        Some("QUEUED")
    );
    let exec = ok(tx.cmd(&["EXEC"]));
    assert_eq!(exec.as_array().unwrap()[0].as_int(), Some(15));

    // SUBSCRIBE, then a PUBLISH from an unpinned client.
    let mut sub = proxy.client();
    assert_eq!(
        ok(sub.cmd(&["SUBSCRIBE", "jobs"]))
            .as_array()
            .map(|a| a.len()),
        Some(3)
    );
    assert_eq!(ok(plain.cmd(&["PUBLISH", "jobs", "j1"])).as_int(), Some(1));
    let msg = ok(sub.read_reply());
    assert_eq!(msg.as_array().unwrap()[2].as_str(), Some("j1"));

    // BLPOP on a pinned connection, woken by an unpinned push.
    let addr = proxy.addr.clone();
    let waiter = thread::spawn(move || {
        let mut w = Client::connect(&addr).unwrap();
        w.set_timeout(Some(Duration::from_secs(20)));
        w.cmd(&["BLPOP", "queue", "15"])
    });
    wait_until(FOLLOW_TIMEOUT, "BLPOP to block on the master", || {
        master
            .info("clients")
            .get("blocked_clients")
            .map(String::as_str)
            == Some("1")
    });
    // The blocked client holds its own connection: unpinned clients are not stuck behind it.
    assert_eq!(ok(plain.cmd(&["GET", "k"])).as_str(), Some("zero"));
    assert_eq!(ok(plain.cmd(&["RPUSH", "queue", "x"])).as_int(), Some(1));
    let popped = ok(waiter.join().unwrap());
    assert_eq!(popped.as_array().unwrap()[1].as_str(), Some("x"));
    assert_eq!(pinned(&proxy), 5.0);
    assert_eq!(ok(plain.cmd(&["GET", "k"])).as_str(), Some("zero"));
    assert_eq!(pinned(&proxy), 5.0, "the plain client stayed unpinned");
}

/// A raw connection that reads RESP3 (the test client reads RESP2 only).
struct Resp3Conn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Resp3Conn {
    fn connect(addr: &str) -> Resp3Conn {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Resp3Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, cmds: &[&[&str]]) {
        use std::io::Write;
        let mut req = Vec::new();
        for c in cmds {
            req.extend_from_slice(&encode_command(c));
        }
        self.stream.write_all(&req).unwrap();
    }

    fn read(&mut self) -> Frame3 {
        use std::io::Read;
        loop {
            if let Some((frame, n)) = decode3(&self.buf).expect("a RESP3 reply") {
                self.buf.drain(..n);
                return frame;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("reply bytes");
            assert!(
                n > 0,
                "closed; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn cmd(&mut self, args: &[&str]) -> Frame3 {
        self.send(&[args]);
        self.read()
    }
}

use redis_protocol::resp3::decode::complete::decode as decode3;
use redis_protocol::resp3::types::{OwnedFrame as Frame3, Resp3Frame};

/// A map's value for `key`, as text.
fn field(map: &Frame3, key: &str) -> Option<String> {
    let Frame3::Map { data, .. } = map else {
        return None;
    };
    data.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .and_then(|(_, v)| v.to_string())
}

/// `HGETALL h` as a RESP3 map `{a: 1, b: 2}`.
fn is_hgetall_map(f: &Frame3) -> bool {
    matches!(f, Frame3::Map { data, .. } if data.len() == 2)
        && field(f, "a").as_deref() == Some("1")
}

/// Clients that switch to RESP3 (`HELLO 3`) share the thread's RESP3 connections, beside RESP2
/// clients on the RESP2 ones: each gets every reply in its own protocol (`HGETALL` a map for
/// one, a flat array for the other, at the same time), a pipeline that switches protocol in
/// its middle gets each reply in the protocol in force when its command was sent, and a RESP3
/// client pinned later keeps RESP3 on its own connection.
#[test]
fn resp3_clients_share_and_get_resp3_replies_beside_resp2_clients() {
    let master = RedisNode::master();
    let proxy = multiplex(&[master.addr()], "threads = 1");
    proxy.wait_master(&master.addr());
    master.cmd_ok(&["HSET", "h", "a", "1", "b", "2"]);

    let mut r2 = proxy.client();
    let mut r3 = Resp3Conn::connect(&proxy.addr);
    let hello = r3.cmd(&["HELLO", "3"]);
    assert_eq!(field(&hello, "proto").as_deref(), Some("3"), "{hello:?}");
    assert_eq!(field(&hello, "server").as_deref(), Some("redis"));
    assert!(field(&hello, "id").is_some() && field(&hello, "role").is_some());
    let before = resp3_shared(&proxy);

    // Both at once, many rounds: each reply in its client's protocol.
    let addr = proxy.addr.clone();
    let resp3 = thread::spawn(move || {
        let mut c = Resp3Conn::connect(&addr);
        c.send(&[&["HELLO", "3"]]);
        assert_eq!(field(&c.read(), "proto").as_deref(), Some("3"));
        for round in 0..50 {
            let v = round.to_string();
            c.send(&[
                &["HGETALL", "h"],
                &["SET", "r3", &v],
                &["GET", "r3"],
                &["GET", "missing"],
                &["EXISTS", "r3"],
            ]);
            let got = c.read();
            assert!(is_hgetall_map(&got), "{got:?}");
            assert_eq!(c.read().as_str(), Some("OK"));
            assert_eq!(c.read().as_str(), Some(v.as_str()));
            assert!(matches!(c.read(), Frame3::Null));
            assert!(matches!(c.read(), Frame3::Number { data: 1, .. }));
        }
    });
    for _ in 0..50 {
        let mut batch = encode_command(&["HGETALL", "h"]);
        batch.extend_from_slice(&encode_command(&["GET", "missing"]));
        r2.send_raw(&batch).unwrap();
        let flat = ok(r2.read_reply());
        assert_eq!(flat.as_array().map(|a| a.len()), Some(4), "{flat:?}");
        assert!(ok(r2.read_reply()).is_nil());
        let got = r3.cmd(&["HGETALL", "h"]);
        assert!(is_hgetall_map(&got), "{got:?}");
    }
    resp3.join().unwrap();
    assert!(resp3_shared(&proxy) >= before + 50.0 * 6.0);

    // One pipeline that switches in its middle, after commands still in flight, and back.
    let mut mixed = Resp3Conn::connect(&proxy.addr);
    mixed.send(&[
        &["SET", "m", "1"],
        &["HGETALL", "h"],
        &["HELLO", "3"],
        &["HGETALL", "h"],
        &["HELLO"],
        &["HELLO", "2"],
        &["HGETALL", "h"],
        &["GET", "m"],
    ]);
    assert_eq!(mixed.read().as_str(), Some("OK"));
    assert!(matches!(mixed.read(), Frame3::Array { data, .. } if data.len() == 4));
    assert_eq!(field(&mixed.read(), "proto").as_deref(), Some("3"));
    assert!(is_hgetall_map(&mixed.read()));
    assert_eq!(field(&mixed.read(), "proto").as_deref(), Some("3"));
    // `HELLO 2`'s reply is RESP2: a flat array of names and values.
    let hello2 = mixed.read();
    let Frame3::Array { data, .. } = &hello2 else {
        panic!("{hello2:?}")
    };
    let proto = data
        .iter()
        .position(|f| f.as_str() == Some("proto"))
        .map(|i| &data[i + 1]);
    assert!(
        matches!(proto, Some(Frame3::Number { data: 2, .. })),
        "{hello2:?}"
    );
    assert!(matches!(mixed.read(), Frame3::Array { data, .. } if data.len() == 4));
    assert_eq!(mixed.read().as_str(), Some("1"));
    // What redis-py 8 sends after `HELLO 3`: a master that does not know it (7.0) answers an
    // error and changes nothing, so it shares.
    let r = r3.cmd(&[
        "CLIENT",
        "MAINT_NOTIFICATIONS",
        "ON",
        "moving-endpoint-type",
        "internal-ip",
    ]);
    assert!(
        matches!(&r, Frame3::SimpleError { data, .. } if data.contains("unknown subcommand")),
        "{r:?}"
    );
    assert_eq!(pinned(&proxy), 0.0);

    // A RESP3 client that pins: its own connection speaks RESP3 too.
    assert!(matches!(
        r3.cmd(&["CLIENT", "SETNAME", "r3"]),
        Frame3::SimpleString { .. }
    ));
    assert_eq!(pinned(&proxy), 1.0);
    assert_eq!(field(&r3.cmd(&["HELLO"]), "proto").as_deref(), Some("3"));
    assert!(is_hgetall_map(&r3.cmd(&["HGETALL", "h"])));
    assert_eq!(r3.cmd(&["CLIENT", "GETNAME"]).as_str(), Some("r3"));

    // HELLO with options pins, and answers as directly.
    let mut named = Resp3Conn::connect(&proxy.addr);
    let hello = named.cmd(&["HELLO", "3", "SETNAME", "n3"]);
    assert_eq!(field(&hello, "proto").as_deref(), Some("3"));
    assert_eq!(named.cmd(&["CLIENT", "GETNAME"]).as_str(), Some("n3"));
    let mut bad = Resp3Conn::connect(&proxy.addr);
    let r = bad.cmd(&["HELLO", "4"]);
    assert!(
        matches!(&r, Frame3::SimpleError { data, .. } if data.starts_with("NOPROTO")),
        "{r:?}"
    );
    assert_eq!(pinned(&proxy), 3.0);
}

/// Inline commands (with an empty line, which Redis does not answer), a request sent in two
/// halves with a pause between, a big argument and a malformed request all read as directly.
#[test]
fn inline_half_commands_and_malformed_requests_read_as_directly() {
    let master = RedisNode::master();
    let proxy = multiplex(&[master.addr()], "");
    proxy.wait_master(&master.addr());

    let mut c = proxy.client();
    c.send_raw(b"SET inline yes\r\n\r\nGET inline\nPING\r\n")
        .unwrap();
    assert!(ok(c.read_reply()).is_ok());
    assert_eq!(ok(c.read_reply()).as_str(), Some("yes"));
    assert_eq!(ok(c.read_reply()).as_str(), Some("PONG"));

    // Half a command: no reply until the rest comes.
    let whole = encode_command(&["SET", "half", "done"]);
    let (first, rest) = whole.split_at(whole.len() / 2);
    c.send_raw(first).unwrap();
    c.set_timeout(Some(Duration::from_millis(300)));
    assert!(c.read_reply().is_err(), "nothing to answer yet");
    c.set_timeout(Some(Duration::from_secs(5)));
    c.send_raw(rest).unwrap();
    assert!(ok(c.read_reply()).is_ok());
    assert_eq!(master.get("half").as_deref(), Some("done"));

    // A 4 MiB argument sent in small pieces.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let cmd = encode_command(&[&b"SET"[..], b"big", &big]);
    for piece in cmd.chunks(100_000) {
        c.send_raw(piece).unwrap();
    }
    assert!(ok(c.read_reply()).is_ok());
    assert_eq!(
        ok(c.cmd(&["STRLEN", "big"])).as_int(),
        Some(big.len() as i64)
    );
    assert_eq!(pinned(&proxy), 0.0);

    // A quoted inline word and a protocol error: left to Redis on the client's own connection.
    let mut q = proxy.client();
    q.send_raw(b"SET quoted \"a b\"\r\nGET quoted\r\n").unwrap();
    assert!(ok(q.read_reply()).is_ok());
    assert_eq!(ok(q.read_reply()).as_str(), Some("a b"));
    let mut bad = proxy.client();
    bad.send_raw(b"*1\r\n:5\r\n").unwrap();
    let r = bad.read_reply();
    assert!(
        matches!(&r, Ok(Reply::Error(e)) if e.contains("Protocol error")),
        "{r:?}"
    );
    assert!(
        bad.read_reply().is_err(),
        "Redis closes after a protocol error"
    );
    assert_eq!(pinned(&proxy), 2.0);
    // The shared connections were not affected.
    assert_eq!(ok(c.cmd(&["GET", "inline"])).as_str(), Some("yes"));
}

/// A switchover: unpinned clients stay connected and their next commands reach the new
/// master; a pinned client's session drains as a 1:1 session does; nothing sent through the
/// proxy after the switch reaches the old master.
#[test]
fn failover_keeps_unpinned_clients_and_nothing_reaches_the_old_master() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let c = RedisNode::replica_of(&a);
    let proxy = multiplex(&[a.addr(), b.addr(), c.addr()], "threads = 2");
    proxy.wait_master(&a.addr());

    let mut unpinned: Vec<Client> = (0..6).map(|_| proxy.client()).collect();
    for (i, u) in unpinned.iter_mut().enumerate() {
        assert!(ok(u.cmd(&["SET", &format!("before-{i}"), "1"])).is_ok());
    }
    let mut pinned_client = proxy.client();
    assert!(ok(pinned_client.cmd(&["CLIENT", "SETNAME", "p"])).is_ok());
    b.wait_synced_with(&a, Duration::from_secs(10));

    b.promote();
    c.replicate_from(&b);
    proxy.wait_master(&b.addr());

    // Unpinned clients: still connected; a command in flight at the switch could have had an
    // error, the next ones reach B.
    for (i, u) in unpinned.iter_mut().enumerate() {
        let key = format!("after-{i}");
        let mut r = u.cmd(&["SET", &key, "x"]);
        if matches!(&r, Ok(Reply::Error(e)) if e.contains("redis-master-proxy")) {
            r = u.cmd(&["SET", &key, "x"]);
        }
        assert!(ok(r).is_ok(), "client {i} kept its connection");
        assert_eq!(b.get(&key).as_deref(), Some("x"));
        assert_eq!(a.get(&key), None, "nothing reaches the old master");
    }
    // The pinned client's session was drained with the old route.
    let res = pinned_client.cmd(&["SET", "pinned-after", "x"]);
    assert!(
        !matches!(res, Ok(Reply::Status(_))),
        "a pinned session on the old master is drained: {res:?}"
    );
    assert_eq!(a.get("pinned-after"), None);
    // New clients share connections to the new master.
    let mut fresh = proxy.client();
    assert!(ok(fresh.cmd(&["SET", "fresh", "1"])).is_ok());
    assert_eq!(b.get("fresh").as_deref(), Some("1"));
    assert_eq!(a.get("fresh"), None);
}

/// A master busy in a script (run by a pinned client) for longer than the check timeout:
/// unpinned clients wait and get their replies; nobody is closed.
#[test]
fn slow_master_holds_unpinned_clients_and_answers_them() {
    let m = RedisNode::master();
    let r = RedisNode::replica_of(&m);
    let proxy = multiplex(&[m.addr(), r.addr()], "");
    proxy.wait_master(&m.addr());
    let mut waiting: Vec<Client> = (0..4).map(|_| proxy.client()).collect();
    for w in waiting.iter_mut() {
        assert!(ok(w.cmd(&["SET", "k", "v"])).is_ok());
        w.set_timeout(Some(Duration::from_secs(30)));
    }
    let addr = proxy.addr.clone();
    let script = thread::spawn(move || {
        let mut s = Client::connect(&addr).unwrap();
        s.set_timeout(Some(Duration::from_secs(30)));
        s.cmd(&["EVAL", BUSY_SCRIPT, "0", "2000"])
    });
    wait_until(FOLLOW_TIMEOUT, "the route to pause", || {
        proxy.status()["master"]["paused"].as_bool() == Some(true)
    });
    for w in waiting.iter_mut() {
        w.send_raw(&encode_command(&["INCR", "during-pause"]))
            .unwrap();
    }
    let mut got: Vec<i64> = waiting
        .iter_mut()
        .map(|w| ok(w.read_reply()).as_int().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4]);
    assert!(matches!(ok(script.join().unwrap()), Reply::Int(1)));
    assert_eq!(
        proxy
            .metric("redis_master_proxy_connections_drained_total")
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        proxy
            .metric("redis_master_proxy_multiplex_errors_total{reason=\"lost\"}")
            .unwrap_or(0.0),
        0.0
    );
}

/// A master that requires `AUTH`: shared connections are never authenticated, so every client
/// is pinned and authenticates itself; a client that does not gets Redis's `NOAUTH`.
#[test]
fn a_master_that_requires_auth_pins_every_client() {
    let a = RedisNode::start(&["requirepass mux-secret"]);
    let toml = config_for(
        &[a.addr()],
        &format!("mode = \"multiplex\"\n[auth]\npassword_env = \"RMP_TEST_PW\"\n{FAST_HEALTH}"),
    );
    let proxy = Proxy::start_config(&toml, &[("RMP_TEST_PW", "mux-secret")]);
    proxy.wait_master(&a.addr());
    let mut anon = proxy.client();
    let r = anon.cmd(&["GET", "k"]);
    assert!(
        matches!(&r, Ok(Reply::Error(e)) if e.starts_with("NOAUTH")),
        "{r:?}"
    );
    // More than ten arguments before AUTH: Redis's own protocol error, on the client's own
    // connection only.
    let mut many = proxy.client();
    let args: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
    let mut cmd: Vec<&str> = vec!["MSET"];
    cmd.extend(args.iter().map(String::as_str));
    let r = many.cmd(&cmd);
    assert!(
        matches!(&r, Ok(Reply::Error(e)) if e.contains("Protocol error")),
        "{r:?}"
    );
    let mut user = proxy.client();
    assert!(ok(user.cmd(&["AUTH", "mux-secret"])).is_ok());
    assert!(ok(user.cmd(&["SET", "k", "v"])).is_ok());
    assert_eq!(ok(anon.cmd(&["AUTH", "mux-secret"])).as_str(), Some("OK"));
    assert_eq!(ok(anon.cmd(&["GET", "k"])).as_str(), Some("v"));
    assert_eq!(shared(&proxy), 0.0);
}

/// How the master holding commands in flight leaves the route.
enum Leaves {
    /// SIGKILL: the shared connection is lost.
    Dies,
    /// `REPLICAOF` the new master: the route drains at once (nothing useful can come back from
    /// a replica), with the connection still open.
    IsDemoted,
}

/// Commands in flight on a shared connection are held by the master (`CLIENT PAUSE WRITE`: they
/// are written and stay unanswered, with no race on timing; its checks, `INFO`, still pass);
/// then it leaves the route. Each is answered with the proxy's error and never sent again: on
/// the new master the keys they incremented are untouched. Unpinned clients stay connected and
/// their next commands run on the new master; a pinned client's session ends with the old one.
fn in_flight_commands_get_an_error(leaves: Leaves) {
    let mut a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    let proxy = multiplex(&[a.addr(), b.addr()], "threads = 1");
    proxy.wait_master(&a.addr());

    let mut clients: Vec<Client> = (0..4).map(|_| proxy.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(ok(c.cmd(&["SET", &format!("before-{i}"), "1"])).is_ok());
    }
    let mut piped = proxy.client();
    assert!(ok(piped.cmd(&["SET", "before-p", "1"])).is_ok());
    let mut pinned_client = proxy.client();
    assert!(ok(pinned_client.cmd(&["CLIENT", "SETNAME", "p"])).is_ok());
    b.wait_synced_with(&a, Duration::from_secs(10));
    assert_eq!(pinned(&proxy), 1.0);

    a.cmd_ok(&["CLIENT", "PAUSE", "60000", "WRITE"]);
    let written = shared(&proxy);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_raw(&encode_command(&["INCR", &format!("inflight-{i}")]))
            .unwrap();
    }
    const PIPELINE: usize = 50;
    let mut batch = Vec::new();
    for _ in 0..PIPELINE {
        batch.extend_from_slice(&encode_command(&["INCR", "inflight-p"]));
    }
    piped.send_raw(&batch).unwrap();
    let in_flight = (clients.len() + PIPELINE) as f64;
    wait_until(FOLLOW_TIMEOUT, "the commands to be written", || {
        shared(&proxy) >= written + in_flight
    });

    match leaves {
        Leaves::Dies => {
            a.kill();
            b.promote();
        }
        Leaves::IsDemoted => {
            b.promote();
            a.replicate_from(&b);
        }
    }
    let lost = |r: &Result<Reply, String>| matches!(r, Ok(Reply::Error(e)) if e.contains("connection to the master was lost"));
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read_reply();
        assert!(lost(&r), "client {i}: {r:?}");
    }
    for j in 0..PIPELINE {
        let r = piped.read_reply();
        assert!(lost(&r), "pipelined command {j}: {r:?}");
    }
    assert_eq!(
        proxy.metric("redis_master_proxy_multiplex_errors_total{reason=\"lost\"}"),
        Some(in_flight)
    );

    proxy.wait_master(&b.addr());
    // Same connections: the lost commands were not run again on B (INCR answers 1).
    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("inflight-{i}");
        assert!(ok(c.cmd(&["GET", &key])).is_nil(), "client {i}");
        assert_eq!(ok(c.cmd(&["INCR", &key])).as_int(), Some(1), "client {i}");
    }
    assert_eq!(ok(piped.cmd(&["INCR", "inflight-p"])).as_int(), Some(1));
    assert_eq!(b.get("before-p").as_deref(), Some("1"));
    // The pinned client's session ended with the master it was pinned to.
    let r = pinned_client.cmd(&["GET", "before-p"]);
    assert!(r.is_err(), "a pinned session on the old master: {r:?}");
    assert_eq!(pinned(&proxy), 1.0, "no unpinned client was pinned");
}

#[test]
fn commands_in_flight_when_the_master_dies_get_an_error_and_are_not_sent_again() {
    in_flight_commands_get_an_error(Leaves::Dies);
}

#[test]
fn commands_in_flight_when_the_master_is_demoted_get_an_error_and_are_not_sent_again() {
    in_flight_commands_get_an_error(Leaves::IsDemoted);
}
