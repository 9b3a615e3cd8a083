//! Scenario tables for the control plane's state machine (`control::machine`), driven with
//! synthetic time: each scenario is a list of steps (a check result, sentinel answers, a sentinel
//! event, time passing) and what the route must be after each. The rules they exercise are
//! numbered in `src/control/rules.md`; each scenario names the case it comes from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_master_proxy::control::machine::{
    Answer, Effect, Input, Machine, Named, Note, Outcome, Params, DISTRUST_FOR, HOLD_MAX,
    ORPHAN_AFTER,
};
use redis_master_proxy::control::sentinel::Kind;
use redis_master_proxy::redis::info::{ReplicationInfo, Role};
use redis_master_proxy::routing::DrainMode;

const ZERO: &str = "0000000000000000000000000000000000000000";
const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

fn master(replid: &str, replid2: &str, replicas: u32, offset: u64) -> Outcome {
    Outcome::Reply(ReplicationInfo {
        role: Role::Master,
        connected_slaves: replicas,
        master_replid: replid.into(),
        master_replid2: replid2.into(),
        master_repl_offset: offset,
        ..Default::default()
    })
}

fn replica(replid: &str, offset: u64) -> Outcome {
    Outcome::Reply(ReplicationInfo {
        role: Role::Replica,
        master_replid: replid.into(),
        master_repl_offset: offset,
        master_link_up: Some(true),
        ..Default::default()
    })
}

fn slow() -> Outcome {
    Outcome::Slow {
        reason: "timeout",
        error: "no answer within 500ms".into(),
    }
}

fn dead() -> Outcome {
    Outcome::Dead {
        reason: "refused",
        error: "connection refused".into(),
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

/// A machine, the clock, and what the shell would hold: the route, paused or not, and the
/// sessions closed on it.
struct World {
    m: Machine,
    now: Instant,
    route: Option<(String, bool)>,
    /// A route withdrawn while its sessions stay (rule 13).
    kept: Option<String>,
    /// Times the route's sessions were closed without a graceful drain.
    closed: u32,
    /// Graceful moves (old master healthy).
    moved: u32,
    /// Total time the route spent paused.
    paused_for: Duration,
    paused_since: Option<Instant>,
    notes: Vec<Note>,
}

impl World {
    fn new(n: usize, sentinels: usize) -> World {
        let names: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("n{i}"))).collect();
        World {
            m: Machine::new(
                names,
                Params {
                    rise: 2,
                    fall: 1,
                    down_after: Duration::from_secs(10),
                    sentinels,
                },
            ),
            now: Instant::now(),
            route: None,
            kept: None,
            closed: 0,
            moved: 0,
            paused_for: Duration::ZERO,
            paused_since: None,
            notes: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) {
        for e in self.m.handle(input, self.now) {
            match e {
                Effect::Publish { backend, drain, .. } => {
                    if let Some(k) = self.kept.take() {
                        if *k != *backend {
                            self.closed += 1;
                        }
                    }
                    self.end_route(drain);
                    self.route = Some((backend.to_string(), false));
                }
                Effect::Withdraw {
                    drain: DrainMode::Keep,
                } => {
                    let r = self.route.take().expect("kept without a route");
                    assert!(!r.1, "a paused route is never kept");
                    self.kept = Some(r.0);
                }
                Effect::Withdraw { drain } => {
                    if self.kept.take().is_some() {
                        self.closed += 1;
                    }
                    self.end_route(drain);
                    self.route = None;
                }
                Effect::Pause { .. } => {
                    let r = self.route.as_mut().expect("pause without a route");
                    assert!(!r.1, "paused twice");
                    r.1 = true;
                    self.paused_since = Some(self.now);
                }
                Effect::Resume => {
                    let r = self.route.as_mut().expect("resume without a route");
                    assert!(r.1, "resumed an open route");
                    r.1 = false;
                    self.paused_for += self.now - self.paused_since.take().unwrap();
                }
                Effect::CheckNow => {}
                Effect::Note(n) => self.notes.push(n),
            }
        }
        assert_eq!(
            self.m.route().map(|(b, p)| (b.to_string(), p)),
            self.route,
            "the machine's route and the effects it emitted agree"
        );
    }

    fn end_route(&mut self, drain: DrainMode) {
        if self.route.is_some() {
            match drain {
                DrainMode::Immediate => self.closed += 1,
                DrainMode::Graceful => self.moved += 1,
                DrainMode::Keep => unreachable!("only with a withdrawal, handled in feed"),
            }
        }
        if let Some(s) = self.paused_since.take() {
            self.paused_for += self.now - s;
        }
    }

    fn check(&mut self, i: usize, o: Outcome) {
        self.feed(Input::Check {
            backend: i,
            addr: Some(addr(i)),
            outcome: o,
            latency: Duration::from_micros(300),
        });
    }

    /// One check round: every backend's outcome, 1 ms apart.
    fn round(&mut self, outcomes: &[Outcome]) {
        for (i, o) in outcomes.iter().enumerate() {
            self.check(i, o.clone());
            self.wait(Duration::from_millis(1));
        }
    }

    fn sentinels_name(&mut self, names: &[Option<usize>]) {
        let answers = names
            .iter()
            .map(|n| match n {
                Some(i) => Answer::Names(Named {
                    label: addr(*i).to_string(),
                    backend: Some(*i),
                }),
                None => Answer::NoMaster,
            })
            .collect();
        self.feed(Input::SentinelAnswers(answers));
    }

    fn event(&mut self, sentinel: usize, kind: Kind, master: usize, subject: Option<usize>) {
        self.feed(Input::SentinelEvent {
            sentinel,
            channel: "+selected-slave",
            kind,
            master: Some(master),
            subject,
        });
    }

    /// Time passes; the shell ticks at the machine's deadlines.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.m.next_deadline().filter(|&t| t <= end) {
            self.now = t.max(self.now);
            self.feed(Input::Tick);
        }
        self.now = end;
    }

    fn routed(&self) -> Option<&str> {
        self.route.as_ref().map(|r| r.0.as_str())
    }

    fn paused(&self) -> bool {
        self.route.as_ref().is_some_and(|r| r.1)
    }

    fn noted(&self, f: impl Fn(&Note) -> bool) -> bool {
        self.notes.iter().any(f)
    }
}

/// Master n0 (history A, two replicas), replicas n1 and n2.
fn healthy() -> Vec<Outcome> {
    vec![master(A, ZERO, 2, 1000), replica(A, 1000), replica(A, 1000)]
}

fn started(sentinels: usize) -> World {
    let mut w = World::new(3, sentinels);
    if sentinels > 0 {
        w.sentinels_name(&vec![Some(0); sentinels]);
    }
    w.round(&healthy());
    assert_eq!(w.routed(), Some("n0"));
    w
}

#[test]
fn no_route_before_every_backend_and_the_sentinels_answered() {
    let mut w = World::new(3, 3);
    w.check(0, master(A, ZERO, 2, 10));
    w.check(1, replica(A, 10));
    assert_eq!(w.routed(), None, "n2 has not answered");
    w.check(2, slow());
    assert_eq!(w.routed(), None, "the sentinels have not answered");
    w.wait(Duration::from_secs(1));
    w.sentinels_name(&[Some(0), None, Some(0)]);
    assert_eq!(w.routed(), None, "the master's reply is no longer fresh");
    w.check(0, master(A, ZERO, 2, 10));
    assert_eq!(w.routed(), Some("n0"));
}

/// Case 1: an accidental `REPLICAOF NO ONE` on a replica, with three sentinels naming the
/// healthy master. The route never moves, never pauses; after Sentinel's revert nothing is left.
#[test]
fn accidental_promotion_with_sentinels_is_not_followed() {
    let mut w = started(3);
    for _ in 0..20 {
        w.round(&[
            master(A, ZERO, 1, 2000),
            master(B, A, 0, 2000),
            replica(A, 2000),
        ]);
        w.sentinels_name(&[Some(0), Some(0), Some(0)]);
        w.wait(Duration::from_millis(500));
        assert_eq!(w.routed(), Some("n0"));
        assert!(!w.paused());
    }
    assert!(w.noted(|n| matches!(n, Note::Uncorroborated { promotions } if promotions.len() == 1)));
    // Sentinel converts it back.
    w.round(&[master(A, ZERO, 2, 3000), replica(A, 3000), replica(A, 3000)]);
    assert_eq!(w.routed(), Some("n0"));
    assert_eq!((w.closed, w.moved, w.paused_for), (0, 0, Duration::ZERO));
    assert!(w.m.view(w.now).uncorroborated.is_empty());
    assert!(w.m.view(w.now).superseded.is_empty());
}

/// Case 1 without Sentinel: the promoted node has no replicas and the master keeps one, so the
/// promotion is not followed either.
#[test]
fn accidental_promotion_info_only_is_not_followed_while_the_master_keeps_replicas() {
    let mut w = started(0);
    for _ in 0..10 {
        w.round(&[
            master(A, ZERO, 1, 2000),
            master(B, A, 0, 2000),
            replica(A, 2000),
        ]);
        w.wait(Duration::from_secs(1));
    }
    assert_eq!(w.routed(), Some("n0"));
    assert_eq!((w.closed, w.moved), (0, 0));
}

/// INFO only: an operator's switchover by hand (promote n1, move n2 under it) is followed; when
/// it is reverted by hand the old history is trusted again: no permanent outage.
#[test]
fn manual_switchover_info_only_is_followed_and_its_revert_too() {
    let mut w = started(0);
    w.round(&[
        master(A, ZERO, 0, 2000),
        master(B, A, 1, 2000),
        replica(B, 2000),
    ]);
    assert_eq!(w.routed(), Some("n1"), "replicas follow the promoted node");
    assert_eq!(w.moved, 1, "the old master still answered: graceful drain");
    for _ in 0..5 {
        w.wait(Duration::from_secs(1));
        w.round(&[
            master(A, ZERO, 0, 2000),
            master(B, A, 1, 2100),
            replica(B, 2100),
        ]);
        assert_eq!(w.routed(), Some("n1"), "the old history stays excluded");
    }
    // Reverted: n1 and n2 follow n0 again.
    w.round(&[master(A, ZERO, 2, 2000), replica(A, 2000), replica(A, 2000)]);
    assert_eq!(w.routed(), Some("n0"));
    assert!(w.m.view(w.now).superseded.is_empty());
}

/// Case 2: one sentinel of three announces a failover of the healthy master every 8 s.
#[test]
fn lying_sentinel_pauses_once_for_at_most_the_hold_then_is_ignored() {
    let mut w = started(3);
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(120) {
        if t.as_millis() % 8000 == 0 {
            w.event(2, Kind::FailoverUnderWay, 0, Some(1));
        }
        w.round(&healthy());
        w.sentinels_name(&[Some(0), Some(0), Some(0)]);
        w.wait(Duration::from_millis(100));
        t += Duration::from_millis(103);
        t = Duration::from_millis(t.as_millis() as u64 / 100 * 100);
        assert_eq!(w.routed(), Some("n0"));
    }
    assert_eq!(w.closed + w.moved, 0, "no session closed");
    // One hold of HOLD_MAX per DISTRUST_FOR.
    let holds = (120 / DISTRUST_FOR.as_secs() + 1) as u32;
    assert!(
        w.paused_for <= HOLD_MAX * holds + Duration::from_millis(200),
        "paused {:?}",
        w.paused_for
    );
    assert!(w.m.view(w.now).contradicted[2] >= 1);
    assert!(w.noted(|n| matches!(n, Note::EventIgnored { sentinel: 2, .. })));
}

/// Rule 6: a hold ends when the failover is aborted, and does not count against the sentinel.
#[test]
fn aborted_failover_resumes_the_route() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    assert!(w.paused());
    w.wait(Duration::from_millis(300));
    w.event(0, Kind::Aborted, 0, None);
    w.round(&healthy());
    assert!(!w.paused());
    assert_eq!(w.m.view(w.now).contradicted[0], 0);
    assert_eq!(w.closed, 0);
}

/// A planned switchover (`SENTINEL FAILOVER`): the event pauses the old master's sessions, the
/// promotion it names moves the route, and the old sessions close without another reply.
#[test]
fn sentinel_switchover_moves_the_route_and_closes_the_held_sessions() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    assert!(w.paused());
    w.wait(Duration::from_millis(150));
    w.round(&[
        master(A, ZERO, 2, 2000),
        master(B, A, 0, 2000),
        replica(A, 2000),
    ]);
    assert_eq!(w.routed(), Some("n1"));
    assert_eq!((w.closed, w.moved), (1, 0), "held sessions close at once");
    // The old master is demoted later; the majority follows.
    w.wait(Duration::from_secs(1));
    w.round(&[replica(B, 2000), master(B, A, 2, 2100), replica(B, 2100)]);
    w.sentinels_name(&[Some(1), Some(1), Some(1)]);
    assert_eq!(w.routed(), Some("n1"));
    assert_eq!(w.closed, 1);
}

/// Case 3: a master busy for 0.9 s (or 3 s) with no failover: the route pauses and resumes;
/// nothing is closed.
#[test]
fn slow_master_pauses_then_resumes() {
    for busy_ms in [900u64, 3000] {
        let mut w = started(3);
        let mut t = 0;
        while t < busy_ms {
            w.check(0, slow());
            assert_eq!(w.routed(), Some("n0"));
            assert!(w.paused());
            w.check(1, replica(A, 1000));
            w.check(2, replica(A, 1000));
            w.sentinels_name(&[Some(0), Some(0), Some(0)]);
            w.wait(Duration::from_millis(500));
            t += 500;
        }
        w.round(&healthy());
        assert!(!w.paused(), "{busy_ms} ms");
        assert_eq!((w.closed, w.moved), (0, 0), "{busy_ms} ms");
    }
}

/// `-BUSY` from a master running a script past its busy threshold proves it alive: a route
/// paused by the slow checks before it resumes (so `SCRIPT KILL` reaches it), and nothing closes.
#[test]
fn busy_reply_keeps_the_route_open() {
    let mut w = started(0);
    let busy = || {
        redis_master_proxy::control::shell::classify(Err(
            redis_master_proxy::redis::client::CheckError::Reply(
                redis_master_proxy::redis::resp::ReplyError::Redis(
                    "BUSY Redis is busy running a script".into(),
                ),
            ),
        ))
    };
    assert!(matches!(busy(), Outcome::Busy { .. }));
    w.check(0, slow());
    assert!(w.paused(), "no answer yet: suspect");
    w.wait(Duration::from_secs(1));
    w.check(0, busy());
    assert!(!w.paused(), "it answers: alive");
    for _ in 0..30 {
        w.wait(Duration::from_secs(1));
        w.check(0, busy());
        assert_eq!(w.routed(), Some("n0"));
        assert!(!w.paused());
    }
    assert_eq!((w.closed, w.moved), (0, 0));
    // A new route never goes to a backend that only answers BUSY.
    let mut fresh = World::new(2, 0);
    fresh.check(0, busy());
    fresh.check(1, replica(A, 10));
    assert_eq!(fresh.routed(), None);
}

/// Rule 2: suspicion is bounded.
#[test]
fn slow_master_for_longer_than_down_after_is_down() {
    let mut w = started(0);
    w.check(0, slow());
    assert!(w.paused());
    w.wait(Duration::from_secs(9));
    assert!(w.paused());
    w.wait(Duration::from_secs(2));
    assert_eq!(w.routed(), None);
    assert_eq!(w.closed, 1);
    assert!(w.noted(|n| matches!(n, Note::SuspectTooLong { .. })));
}

/// A hung master, failed over by Sentinel, then woken: the promotion is accepted (the event
/// names it), the paused sessions close without the held replies, and the woken master never
/// gets the route back.
#[test]
fn hung_master_failed_over_never_gets_the_route_back() {
    for sentinels in [0, 3] {
        let mut w = started(sentinels);
        w.check(0, slow());
        assert!(w.paused());
        w.wait(Duration::from_secs(1));
        if sentinels > 0 {
            w.event(0, Kind::FailoverUnderWay, 0, Some(1));
        }
        w.check(1, master(B, A, 0, 1000));
        assert_eq!(w.routed(), Some("n1"), "sentinels: {sentinels}");
        assert_eq!(w.closed, 1);
        // It wakes, still a master of the old history, before Sentinel demotes it.
        for _ in 0..10 {
            w.wait(Duration::from_secs(1));
            w.round(&[
                master(A, ZERO, 0, 1000),
                master(B, A, 1, 1200),
                replica(B, 1200),
            ]);
            assert_eq!(w.routed(), Some("n1"), "sentinels: {sentinels}");
        }
    }
}

/// The chaos-soak case: a switchover, then the new master dies before the old one is demoted.
/// The old history stays excluded while nothing says it is safe.
#[test]
fn old_master_stays_excluded_after_its_successor_dies() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    w.round(&[
        master(A, ZERO, 1, 2000),
        master(B, A, 1, 2000),
        replica(B, 2000),
    ]);
    assert_eq!(w.routed(), Some("n1"));
    w.check(1, dead());
    assert_eq!(w.routed(), None);
    w.sentinels_name(&[Some(1), Some(1), Some(1)]);
    for _ in 0..5 {
        w.wait(Duration::from_secs(1));
        w.round(&[master(A, ZERO, 1, 2000), dead(), replica(B, 2000)]);
        assert_eq!(w.routed(), None, "n0 serves a history that was left");
    }
    // The sentinels fail over to n2.
    w.event(0, Kind::FailoverUnderWay, 1, Some(2));
    w.round(&[replica(C, 2000), dead(), master(C, B, 1, 2000)]);
    w.sentinels_name(&[Some(2), Some(2), Some(2)]);
    w.round(&[replica(C, 2000), dead(), master(C, B, 1, 2000)]);
    assert_eq!(w.routed(), Some("n2"));
}

/// INFO only: when the node that superseded a history is gone for good, the history is
/// trusted again after ORPHAN_AFTER (no exclusion is permanent).
#[test]
fn superseded_history_is_trusted_again_when_its_successor_stays_gone() {
    let mut w = started(0);
    w.round(&[
        master(A, ZERO, 0, 2000),
        master(B, A, 1, 2000),
        replica(B, 2000),
    ]);
    assert_eq!(w.routed(), Some("n1"));
    w.check(1, dead());
    let mut t = Duration::ZERO;
    while t < ORPHAN_AFTER + Duration::from_secs(2) {
        w.round(&[master(A, ZERO, 0, 2000), dead(), replica(B, 2000)]);
        w.wait(Duration::from_secs(1));
        t += Duration::from_secs(1);
    }
    w.round(&[master(A, ZERO, 0, 2000), dead(), replica(B, 2000)]);
    assert_eq!(w.routed(), Some("n0"));
}

/// Case 4: a replica restarted from its RDB without `replicaof` boots as a master out of the
/// live master's history, behind it and with no replicas. INFO only: the route stays.
#[test]
fn replica_restarted_as_master_from_its_rdb_does_not_take_the_route() {
    let mut w = started(0);
    w.check(2, dead());
    w.wait(Duration::from_secs(2));
    for _ in 0..10 {
        w.round(&[
            master(A, ZERO, 1, 5000),
            replica(A, 5000),
            master(C, A, 0, 4000),
        ]);
        w.wait(Duration::from_secs(1));
        assert_eq!(w.routed(), Some("n0"));
    }
    assert_eq!(w.closed + w.moved, 0);
    assert!(w.noted(|n| matches!(n, Note::Uncorroborated { promotions } if !promotions.is_empty())));
}

/// Case 5: two masters with unrelated histories. A proxy that routed to the isolated one
/// before the split and one started after it choose the same master: the one with replicas.
#[test]
fn split_brain_fleet_chooses_the_same_master_whenever_it_started() {
    for sentinels in [0, 3] {
        let split = [
            master(A, ZERO, 0, 30_000),
            master(B, ZERO, 1, 442),
            replica(B, 442),
        ];
        let mut early = World::new(3, sentinels);
        if sentinels > 0 {
            early.sentinels_name(&[Some(0), Some(0), Some(0)]);
        }
        early.round(&[master(A, ZERO, 0, 30_000), dead(), dead()]);
        assert_eq!(early.routed(), Some("n0"));
        let mut late = World::new(3, sentinels);
        for w in [&mut early, &mut late] {
            for _ in 0..3 {
                w.wait(Duration::from_secs(1));
                if sentinels > 0 {
                    // One sentinel still names n0 (it is partitioned with it); two name n1.
                    w.sentinels_name(&[Some(0), Some(1), Some(1)]);
                }
                w.round(&split);
                w.round(&split);
            }
        }
        assert_eq!(early.routed(), Some("n1"), "sentinels: {sentinels}");
        assert_eq!(late.routed(), Some("n1"), "sentinels: {sentinels}");
        assert!(early.m.view(early.now).split_brain.len() == 2);
        assert!(
            early.noted(|n| matches!(n, Note::SplitBrain { masters, .. } if masters.len() == 2))
        );
    }
}

/// Rule 9: one sentinel of three, reached behind a partition, is no majority.
#[test]
fn one_reachable_sentinel_is_no_majority() {
    let mut w = World::new(3, 3);
    w.feed(Input::SentinelAnswers(vec![
        Answer::Names(Named {
            label: addr(1).to_string(),
            backend: Some(1),
        }),
        Answer::Unreachable,
        Answer::Unreachable,
    ]));
    w.round(&[master(A, ZERO, 0, 10), master(B, ZERO, 1, 5), replica(B, 5)]);
    assert_eq!(
        w.routed(),
        Some("n1"),
        "by replicas, not by the lone sentinel"
    );
    let mut w = World::new(3, 3);
    w.feed(Input::SentinelAnswers(vec![
        Answer::Names(Named {
            label: addr(0).to_string(),
            backend: Some(0),
        }),
        Answer::Names(Named {
            label: addr(0).to_string(),
            backend: Some(0),
        }),
        Answer::Unreachable,
    ]));
    w.round(&[master(A, ZERO, 0, 10), master(B, ZERO, 1, 5), replica(B, 5)]);
    assert_eq!(w.routed(), Some("n0"), "two of three is a majority");
}

/// A killed master is down at once (refused is evidence), whatever `fall` says.
#[test]
fn refused_master_is_withdrawn_at_once() {
    let mut w = started(0);
    w.check(0, dead());
    assert_eq!(w.routed(), None);
    assert_eq!(w.closed, 1);
    w.wait(Duration::from_secs(1));
    w.round(&[dead(), master(B, A, 0, 1000), replica(B, 1000)]);
    assert_eq!(w.routed(), Some("n1"));
}

/// Rule 12: a candidate whose reply is old is checked again before it gets the route.
#[test]
fn new_master_needs_a_fresh_reply() {
    let mut w = started(0);
    w.check(1, master(B, A, 0, 1000));
    assert_eq!(
        w.routed(),
        Some("n0"),
        "not corroborated while n0 keeps its replicas"
    );
    w.wait(Duration::from_secs(1));
    w.check(0, dead());
    assert_eq!(w.routed(), None, "n1's reply is a second old");
    w.check(1, master(B, A, 0, 1000));
    assert_eq!(w.routed(), Some("n1"));
}

/// Rule 8: distrust ends; a sentinel that cried wolf long ago is believed again.
#[test]
fn distrust_expires() {
    let mut w = started(3);
    w.event(1, Kind::FailoverUnderWay, 0, None);
    w.wait(HOLD_MAX + Duration::from_millis(10));
    w.round(&healthy());
    assert!(!w.paused());
    assert!(!w.m.view(w.now).distrusted.is_empty());
    w.event(1, Kind::FailoverUnderWay, 0, None);
    assert!(!w.paused(), "ignored while distrusted");
    w.wait(DISTRUST_FOR);
    w.round(&healthy());
    w.event(1, Kind::FailoverUnderWay, 0, None);
    assert!(w.paused(), "believed again");
    assert!(w.m.view(w.now).distrusted.is_empty());
}

/// A killed master's failover: the events about it hold nothing (it is no candidate) and, when
/// nothing follows, do not count against the sentinel that sent them.
#[test]
fn events_about_a_dead_master_neither_hold_nor_discredit_the_sentinel() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    assert!(w.paused());
    w.check(0, dead());
    assert_eq!(w.routed(), None);
    w.wait(HOLD_MAX + Duration::from_millis(10));
    w.round(&[dead(), replica(A, 1000), replica(A, 1000)]);
    assert_eq!(
        w.m.view(w.now).contradicted[0],
        0,
        "the master died: no lie"
    );
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    assert!(
        w.m.view(w.now).holds.is_empty(),
        "a dead master is not held"
    );
    w.round(&[dead(), master(B, A, 1, 1000), replica(B, 1000)]);
    assert_eq!(w.routed(), Some("n1"));
    assert!(w.m.view(w.now).distrusted.is_empty());
}

/// A real failover slower than the hold: the hold expires and the route resumes, but the
/// promotion that follows is still corroborated by the event that announced it, and the
/// sentinel that led it is trusted again.
#[test]
fn failover_slower_than_the_hold_is_still_followed() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    assert!(w.paused());
    w.wait(HOLD_MAX + Duration::from_millis(100));
    w.round(&healthy());
    assert!(!w.paused(), "the hold is bounded");
    assert_eq!(w.m.view(w.now).distrusted.len(), 1);
    w.wait(Duration::from_millis(900));
    w.round(&[
        master(A, ZERO, 1, 2000),
        master(B, A, 0, 2000),
        replica(A, 2000),
    ]);
    assert_eq!(w.routed(), Some("n1"), "corroborated by the earlier event");
    assert!(w.m.view(w.now).distrusted.is_empty(), "proved right");
}

/// With sentinels, a history left for a successor that died is trusted again once the successor
/// has been gone 30 s and the sentinels name its master, even with no replica left to follow it.
#[test]
fn superseded_history_with_sentinels_ends_when_they_name_it_and_the_successor_stays_gone() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, Some(1));
    w.round(&[master(A, ZERO, 0, 2000), master(B, A, 0, 2000), dead()]);
    assert_eq!(w.routed(), Some("n1"));
    w.check(1, dead());
    let mut t = Duration::ZERO;
    while t < ORPHAN_AFTER + Duration::from_secs(2) {
        w.sentinels_name(&[Some(0), Some(0), Some(0)]);
        w.round(&[master(A, ZERO, 0, 2000), dead(), dead()]);
        if t < ORPHAN_AFTER - Duration::from_secs(1) {
            assert_eq!(w.routed(), None, "still excluded at {t:?}");
        }
        w.wait(Duration::from_secs(1));
        t += Duration::from_secs(1);
    }
    w.round(&[master(A, ZERO, 0, 2000), dead(), dead()]);
    assert_eq!(w.routed(), Some("n0"));
}

/// Rule 13: a client turns the one master into a replica of nothing (`REPLICAOF host port`, as
/// Redis's own tests do) and back. New clients wait meanwhile, its sessions stay (Redis answers
/// their writes with READONLY), and when it answers as a master again the same route comes back
/// with nothing closed.
#[test]
fn demoted_master_with_no_successor_keeps_its_sessions_until_it_is_master_again() {
    let mut w = started(0);
    w.check(0, replica(A, 1000));
    assert_eq!(w.routed(), None, "new clients wait");
    assert_eq!(w.kept.as_deref(), Some("n0"));
    assert_eq!(w.closed, 0);
    w.wait(Duration::from_secs(1));
    w.round(&[replica(A, 1000), replica(A, 1000), replica(A, 1000)]);
    assert_eq!(w.kept.as_deref(), Some("n0"));
    w.wait(Duration::from_secs(1));
    w.check(0, master(C, A, 0, 1000));
    w.check(0, master(C, A, 0, 1000));
    assert_eq!(w.routed(), Some("n0"));
    assert_eq!((w.closed, w.kept.as_deref()), (0, None), "nothing closed");
}

/// Rule 13: kept sessions close at once when another master takes the route, when their server
/// stops answering, and after `health.down_after` without a master.
#[test]
fn kept_sessions_end_with_their_evidence() {
    // Another master takes the route.
    let mut w = started(0);
    w.check(0, replica(B, 1000));
    assert_eq!(w.kept.as_deref(), Some("n0"));
    w.round(&[replica(B, 1000), master(B, A, 1, 1000), replica(B, 1000)]);
    assert_eq!(w.routed(), Some("n1"));
    assert_eq!((w.closed, w.kept.as_deref()), (1, None));

    // Its server stops answering.
    let mut w = started(0);
    w.check(0, replica(A, 1000));
    w.check(0, dead());
    assert_eq!((w.closed, w.kept.as_deref()), (1, None));

    // No master for down_after (10 s here), checked every second.
    let mut w = started(0);
    w.check(0, replica(A, 1000));
    for _ in 0..9 {
        w.wait(Duration::from_secs(1));
        w.round(&[replica(A, 1000), replica(A, 1000), replica(A, 1000)]);
    }
    assert_eq!(w.kept.as_deref(), Some("n0"), "9 s");
    w.wait(Duration::from_millis(1500));
    assert_eq!((w.closed, w.kept.as_deref()), (1, None), "past 10 s");
    assert_eq!(w.routed(), None);
}

/// Rule 13: a paused route is never kept: a master demoted while held (the old master of a
/// failover) may have acknowledged writes its successor never saw.
#[test]
fn held_master_demoted_closes_its_sessions_at_once() {
    let mut w = started(3);
    w.event(0, Kind::FailoverUnderWay, 0, None);
    assert_eq!(w.route, Some(("n0".into(), true)));
    w.check(0, replica(B, 1000));
    assert_eq!(w.routed(), None);
    assert_eq!((w.closed, w.kept.as_deref()), (1, None));
}
