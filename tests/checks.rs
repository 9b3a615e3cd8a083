//! Health checks against peers that misbehave in ways a real Redis will not (fake servers), and
//! against a real Redis with AUTH. Each bad peer must make the check fail with a clear reason,
//! within the timeout, reading a bounded number of bytes.

mod common;

use std::time::{Duration, Instant};

use redis_master_proxy::config::{Auth, HostPort, Secret};
use redis_master_proxy::control::health::check;
use redis_master_proxy::redis::client::CheckError;
use redis_master_proxy::redis::info::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_millis(400);

/// What a fake backend does with a check connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Sends these bytes, then keeps the connection open.
    Reply(&'static [u8]),
    /// Sends these bytes, then closes.
    ReplyAndClose(&'static [u8]),
    /// Reads and never answers (a hung server).
    Silent,
    /// Announces a 1 GiB bulk and streams bytes until the peer goes away.
    Endless,
    /// Sends a valid reply one byte every 100 ms.
    Trickle,
}

/// Starts a fake backend on a free loopback port; returns its address.
async fn fake(behaviour: Behaviour) -> HostPort {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                match behaviour {
                    Behaviour::Reply(b) => {
                        let _ = s.write_all(b).await;
                        let _ = s.read(&mut buf).await;
                    }
                    Behaviour::ReplyAndClose(b) => {
                        let _ = s.write_all(b).await;
                    }
                    Behaviour::Silent => {
                        let _ = s.read(&mut buf).await;
                    }
                    Behaviour::Endless => {
                        let _ = s.write_all(b"$1073741824\r\n").await;
                        let chunk = vec![b'x'; 64 * 1024];
                        // Bounded: at most 1 GiB, and it stops as soon as the checker closes.
                        for _ in 0..16 * 1024 {
                            if s.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                    Behaviour::Trickle => {
                        for b in b"$20\r\nrole:master\r\nfoo:bar\r\n".iter() {
                            if s.write_all(&[*b]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    });
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

async fn failure(b: Behaviour) -> (CheckError, Duration) {
    let hp = fake(b).await;
    let started = Instant::now();
    let report = check(&hp, None, TIMEOUT).await;
    let err = report
        .result
        .expect_err("a misbehaving backend must fail its check");
    (err, started.elapsed())
}

#[tokio::test]
async fn misbehaving_backends_fail_with_a_reason() {
    let cases: &[(Behaviour, &str, &str)] = &[
        (
            Behaviour::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            "protocol",
            "unparseable",
        ),
        (
            Behaviour::Reply(b"-LOADING Redis is loading the dataset in memory\r\n"),
            "loading",
            "LOADING",
        ),
        (
            Behaviour::Reply(b"-NOAUTH Authentication required.\r\n"),
            "auth",
            "NOAUTH",
        ),
        (Behaviour::Reply(b"+OK\r\n"), "protocol", "simple string"),
        (
            Behaviour::ReplyAndClose(b"$100\r\nrole:mas"),
            "closed",
            "closed",
        ),
        (Behaviour::ReplyAndClose(b""), "closed", "closed"),
        (Behaviour::Silent, "timeout", "no answer"),
        (Behaviour::Endless, "oversized", "larger than"),
        (Behaviour::Trickle, "timeout", "no answer"),
    ];
    for (b, reason, text) in cases {
        let (err, took) = failure(*b).await;
        assert_eq!(err.reason(), *reason, "{err}");
        assert!(err.to_string().contains(text), "{err} lacks {text}");
        // Bounded by the timeout (with slack for a loaded machine), never hanging.
        assert!(took < TIMEOUT * 10, "{err}: took {took:?}");
    }
}

#[tokio::test]
async fn refused_connection_is_a_reason_of_its_own() {
    let port = common::free_port();
    let hp = HostPort {
        host: "127.0.0.1".into(),
        port,
    };
    let err = check(&hp, None, TIMEOUT).await.result.unwrap_err();
    assert_eq!(err.reason(), "refused", "{err}");
}

#[tokio::test]
async fn auth_is_sent_and_a_wrong_password_is_a_clear_failure() {
    let node = common::RedisNode::start(&["requirepass s3cret-pw"]);
    let hp: HostPort = node.addr().parse().unwrap();
    let good = Auth {
        username: None,
        password: Secret::new("s3cret-pw"),
        source: "test".into(),
    };
    let report = check(&hp, Some(&good), Duration::from_secs(2)).await;
    assert_eq!(report.result.unwrap().role, Role::Master);

    let none = check(&hp, None, Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert_eq!(none.reason(), "auth", "{none}");

    let bad = Auth {
        username: None,
        password: Secret::new("wrong"),
        source: "test".into(),
    };
    let err = check(&hp, Some(&bad), Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.reason(), "auth", "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password must not appear: {err}"
    );
}

#[tokio::test]
async fn acl_user_auth_works() {
    let node = common::RedisNode::start(&[
        "requirepass admin-pw",
        "user checker on >checker-pw -@all +info +auth +ping",
    ]);
    let hp: HostPort = node.addr().parse().unwrap();
    let auth = Auth {
        username: Some("checker".into()),
        password: Secret::new("checker-pw"),
        source: "test".into(),
    };
    let report = check(&hp, Some(&auth), Duration::from_secs(2)).await;
    assert_eq!(report.result.unwrap().role, Role::Master);
}
