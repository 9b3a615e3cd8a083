//! The timing rules, run in-process under tokio's paused clock: the real app (control plane,
//! accept loop, sessions, admin listener) on the test's runtime, in front of fake nodes and a
//! fake sentinel served by that runtime (`tests/common/inproc.rs` says why fakes). Time is
//! virtual: a 2 s hold takes no real time, and the bounds the rules promise are asserted
//! exactly, since nothing but the script moves the clock. The rules are numbered as in
//! `src/control/rules.md`.

mod common;

use std::time::Duration;

use common::inproc::{config, replid, sentinel_section, App, Conn, FakeRedis, FakeSentinel, Repl};
use tokio::time::Instant;

/// Checks every second, each bounded by 950 ms, so a fake can take up to 900 ms to answer.
const SLOW_HEALTH: &str = "[health]\ninterval = \"1s\"\ntimeout = \"950ms\"\n";

/// How long a failover event holds its master at most (rule 6).
const HOLD_MAX: Duration = Duration::from_secs(2);

/// Slack for the polls that observe a change (every 10 ms of virtual time).
const OBSERVE: Duration = Duration::from_millis(100);

/// Rule 12, the setting: A answers every check after 600 ms, B after 900 ms, and no route is
/// published before both have answered once (rule 14). When B answers, A's one report is
/// 300 ms old; A's next check, started at the fast round after its first answer, is still
/// running, and ends at 1,250 ms. A client connects at once and waits for a master.
async fn aged_report_setting() -> (FakeRedis, FakeRedis, App, Conn) {
    let a = FakeRedis::start(Repl::master(&replid('a'), 1)).await;
    let b = FakeRedis::start(Repl::replica_of(&a)).await;
    a.delay_info(Duration::from_millis(600));
    b.delay_info(Duration::from_millis(900));
    let app = App::start(&config(
        &[&a.addr, &b.addr],
        &format!("wait_for_master = \"5s\"\n{SLOW_HEALTH}"),
    ))
    .await;
    let mut client = Conn::connect(&app.client).await;
    client.send(&["PING"]).await;
    (a, b, app, client)
}

/// Rule 12: a master whose only report aged past 250 ms gets the route on its next reply, not
/// on the old one.
#[tokio::test(start_paused = true)]
async fn a_master_gets_the_route_on_a_fresh_reply_not_on_an_aged_one() {
    let (a, _b, app, mut client) = aged_report_setting().await;
    let start = Instant::now();
    assert_eq!(client.line().await.as_deref(), Some("+PONG"));
    assert_eq!(
        a.infos(),
        2,
        "the route waited for A's second reply (published after {:?})",
        start.elapsed()
    );
    assert_eq!(app.master().await.as_deref(), Some(a.addr.as_str()));
    app.stop().await;
}

/// Rule 12: a master that turned replica since its aged report never gets the route, and the
/// client waiting meanwhile never reaches it.
#[tokio::test(start_paused = true)]
async fn a_master_that_turned_replica_since_its_aged_report_never_gets_the_route() {
    let (a, _b, app, mut client) = aged_report_setting().await;
    // A's first answer says master; every answer after it says replica (of a master the
    // proxy does not know).
    let mut demoted = Repl::replica_of(&a);
    demoted.master = Some("127.0.0.1:1".into());
    assert_eq!(a.infos(), 0, "set before A's first answer");
    a.then(demoted);
    // The client waits its 5 s for a master, and is closed without one.
    assert_eq!(
        client.line().await,
        None,
        "no master: closed after the wait"
    );
    assert!(a.infos() >= 2, "A was checked again");
    assert_eq!(a.commands(), Vec::<String>::new(), "no client reached A");
    assert_eq!(app.master().await, None);
    app.stop().await;
}

/// A master with a replica, a sentinel naming the master, and the app routing to it and
/// subscribed to the sentinel's events; one client session bound to the master.
async fn sentinel_setting() -> (FakeRedis, FakeRedis, FakeSentinel, App, Conn) {
    let a = FakeRedis::start(Repl::master(&replid('a'), 1)).await;
    let b = FakeRedis::start(Repl::replica_of(&a)).await;
    let s = FakeSentinel::start(&a.addr).await;
    let app = App::start(&config(&[&a.addr, &b.addr], &sentinel_section(&[&s.addr]))).await;
    app.wait_master(&a.addr).await;
    app.wait_status(Duration::from_secs(10), "the subscription", |_| {
        s.subscribers() == 1
    })
    .await;
    let mut client = Conn::connect(&app.client).await;
    assert_eq!(client.cmd(&["PING"]).await.as_deref(), Some("+PONG"));
    (a, b, s, app, client)
}

/// The sentinel announces a failover of A to B; once the route is paused by the hold, the
/// client sends a command. Returns when the announcement was made.
async fn hold_with_a_command(
    a: &FakeRedis,
    b: &FakeRedis,
    s: &FakeSentinel,
    app: &App,
    client: &mut Conn,
) -> Instant {
    let announced = Instant::now();
    s.announce_failover(&a.addr, &b.addr);
    app.wait_status(
        Duration::from_secs(1),
        "the route paused by the hold",
        paused,
    )
    .await;
    client.send(&["SET", "k", "during-hold"]).await;
    announced
}

fn paused(st: &serde_json::Value) -> bool {
    st["master"]["paused"].as_bool() == Some(true)
}

/// Rules 6 and 8: a failover event with no failover behind it holds the master for 2 s, no
/// more: the route is paused (a command sent meanwhile waits, and is not lost), then resumes on
/// the same master, and the sentinel is distrusted.
#[tokio::test(start_paused = true)]
async fn a_failover_event_holds_the_route_for_two_seconds_at_most() {
    let (a, b, s, app, mut client) = sentinel_setting().await;
    let announced = hold_with_a_command(&a, &b, &s, &app, &mut client).await;
    let resumed = loop {
        let st = app.status().await;
        if !paused(&st) {
            break Instant::now();
        }
        assert!(!a.received("SET"), "a byte reached the held master");
        assert!(
            announced.elapsed() <= HOLD_MAX + OBSERVE,
            "still held after {:?}: {st}",
            announced.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let held = resumed - announced;
    assert!(held >= HOLD_MAX, "the hold ended early, after {held:?}");
    assert_eq!(client.line().await.as_deref(), Some("+OK"));
    assert!(a.received("SET k during-hold"));
    let st = app.status().await;
    assert_eq!(st["master"]["backend"].as_str(), Some(a.addr.as_str()));
    assert_eq!(
        st["sentinel"]["distrusted"].as_array().map(Vec::len),
        Some(1),
        "{st}"
    );
    app.stop().await;
}

/// Rule 6: a hold ends before its 2 s when the promotion it announced is seen; the route
/// moves, and the session held on the old master is closed without delivering what it held.
#[tokio::test(start_paused = true)]
async fn a_hold_ends_early_when_the_promotion_is_seen() {
    let (a, b, s, app, mut client) = sentinel_setting().await;
    let announced = hold_with_a_command(&a, &b, &s, &app, &mut client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B is promoted (the old master, A, still says master) and the sentinel names it.
    b.set(Repl::promoted_from(&a, &replid('b'), 1));
    s.name(&b.addr);
    app.wait_master(&b.addr).await;
    assert!(
        announced.elapsed() < HOLD_MAX,
        "the route moved only after {:?}",
        announced.elapsed()
    );
    assert_eq!(client.line().await, None, "closed without a reply");
    assert!(
        !a.received("SET"),
        "the held command reached the old master"
    );
    assert!(!b.received("SET"), "a session bound to A wrote to B");
    let mut again = Conn::connect(&app.client).await;
    assert_eq!(again.cmd(&["SET", "k", "v"]).await.as_deref(), Some("+OK"));
    assert!(b.received("SET k v"));
    app.stop().await;
}

/// A master A with a replica B, the app routing to A (INFO only, `drain_timeout = 2s`), and a
/// client session on A with a command in flight: A holds its reply until the test releases it.
async fn drain_setting() -> (FakeRedis, FakeRedis, App, Conn) {
    let a = FakeRedis::start(Repl::master(&replid('a'), 1)).await;
    let b = FakeRedis::start(Repl::replica_of(&a)).await;
    let app = App::start(&config(&[&a.addr, &b.addr], "drain_timeout = \"2s\"")).await;
    app.wait_master(&a.addr).await;
    let mut client = Conn::connect(&app.client).await;
    assert_eq!(client.cmd(&["PING"]).await.as_deref(), Some("+PONG"));
    client.send(&["HOLD"]).await;
    app.wait_status(Duration::from_secs(1), "A to get the command", |_| {
        a.received("HOLD")
    })
    .await;
    (a, b, app, client)
}

/// Promotes B out of A's history while A stays a healthy master (rule 13's graceful case);
/// returns when the route is on B, with the moments before the change and when it was seen.
async fn switch_to_b(a: &FakeRedis, b: &FakeRedis, app: &App) -> (Instant, Instant) {
    let before = Instant::now();
    b.set(Repl::promoted_from(a, &replid('b'), 1));
    app.wait_master(&b.addr).await;
    (before, Instant::now())
}

/// Rule 13: when the route moves away from a healthy master, a session on it delivers the
/// reply in flight, forwards nothing sent after the change, and then closes.
#[tokio::test(start_paused = true)]
async fn a_session_on_a_replaced_master_delivers_its_reply_in_flight_then_closes() {
    let (a, b, app, mut client) = drain_setting().await;
    switch_to_b(&a, &b, &app).await;
    client.send(&["SET", "after", "switch"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.release();
    assert_eq!(client.line().await.as_deref(), Some("+RELEASED"));
    assert_eq!(
        client.line().await,
        None,
        "closed after the reply in flight"
    );
    assert!(
        !a.received("SET"),
        "a command sent after the change reached A"
    );
    assert!(!b.received("SET"), "a session bound to A wrote to B");
    app.stop().await;
}

/// Rule 13: a reply that does not come within `drain_timeout` is not waited for: the session
/// closes `drain_timeout` after the route moved.
#[tokio::test(start_paused = true)]
async fn a_session_on_a_replaced_master_closes_at_the_drain_timeout() {
    let (a, b, app, mut client) = drain_setting().await;
    let (before, seen) = switch_to_b(&a, &b, &app).await;
    assert_eq!(client.line().await, None, "closed without the reply");
    let closed = Instant::now();
    let drain_timeout = Duration::from_secs(2);
    assert!(
        closed - before >= drain_timeout,
        "closed {:?} after the change began",
        closed - before
    );
    assert!(
        closed - seen <= drain_timeout,
        "closed {:?} after the change was seen",
        closed - seen
    );
    app.stop().await;
}
