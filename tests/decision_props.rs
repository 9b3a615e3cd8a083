//! Property tests of the control plane's state machine (`control::machine`), run through the
//! real machine over generated histories with synthetic time.
//!
//! A history is a chaotic prefix followed by a stable suffix. In the prefix anything goes: check
//! results of any role and history (replication ids from a three-letter alphabet, so lineage
//! claims are frequent), slow, busy, refused and failed checks, sentinel answers naming anything, and
//! sentinel events of every kind about any backend — lies included. The suffix is a world that
//! has settled: one master with a history never seen before, the others its replicas or dead, the
//! sentinels (when configured) naming it, and optionally one sentinel that keeps announcing
//! failovers that never happen. The invariants (rule numbers: `src/control/rules.md`):
//! - **never a wrong route**: at every step the route's backend is up and its latest reply says
//!   `role:master`; an open (not paused) route's backend was not slow at its latest check;
//! - **the effects are the state**: replaying the emitted effects gives the machine's route;
//! - **no outage while a healthy master exists**: from 3 s into the suffix the route is that
//!   master; every hold and exclusion left over from the prefix has ended by then;
//! - **no session closed without evidence**: once the suffix routes to its master, the route
//!   never moves or is withdrawn again, and a lying sentinel pauses it at most one hold per
//!   distrust period;
//! - **one fleet, one answer**: a machine started at the beginning of the suffix (another proxy
//!   replica, started later) routes to the same master; also when the suffix is a split brain
//!   between two unrelated masters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use redis_master_proxy::control::machine::{
    Answer, Effect, Input, Machine, Named, Outcome, Params, HOLD_MAX,
};
use redis_master_proxy::control::sentinel::Kind;
use redis_master_proxy::redis::info::{ReplicationInfo, Role};

const REPLIDS: [&str; 3] = [
    "5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21",
    "c7b2f3a9d1e04a5b8c6d7e8f9a0b1c2d3e4f5a6b",
    "a0d2b8fe5ac4fb08be2c6d4b6d5d3a1e8b0f7c11",
];
/// Histories the prefix never uses: the suffix's masters serve these.
const FRESH: [&str; 2] = [
    "f000000000000000000000000000000000000001",
    "f000000000000000000000000000000000000002",
];
const ZERO: &str = "0000000000000000000000000000000000000000";

fn reply(master: bool, id: usize, prev: usize, slaves: u32, offset: u64) -> Outcome {
    Outcome::Reply(ReplicationInfo {
        role: if master { Role::Master } else { Role::Replica },
        connected_slaves: if master { slaves } else { 0 },
        master_replid: REPLIDS[id].into(),
        master_replid2: match prev {
            0 => ZERO.into(),
            k => REPLIDS[(id + k) % REPLIDS.len()].into(),
        },
        master_repl_offset: offset,
        master_link_up: (!master).then_some(true),
        ..Default::default()
    })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => (any::<bool>(), 0..3usize, 0..3usize, 0..3u32, 0..4u64)
            .prop_map(|(m, id, prev, slaves, off)| reply(m, id, prev, slaves, off)),
        1 => Just(Outcome::Slow { reason: "timeout", error: "slow".into() }),
        1 => Just(Outcome::Busy { error: "BUSY".into() }),
        1 => Just(Outcome::Dead { reason: "refused", error: "refused".into() }),
        1 => Just(Outcome::Failed { reason: "closed", error: "closed".into() }),
    ]
}

#[derive(Clone, Debug)]
enum Act {
    Check(usize, Outcome),
    /// Per sentinel: `None` unreachable, `Some(None)` no master, `Some(Some(k))` names backend k
    /// (k == n: an address that is no backend).
    Answers(Vec<Option<Option<usize>>>),
    Event(usize, Kind, usize, Option<usize>),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::FailoverUnderWay),
        1 => Just(Kind::Aborted),
        1 => Just(Kind::Activity),
    ]
}

fn act(n: usize, sentinels: usize) -> BoxedStrategy<Act> {
    let check = (0..n, outcome()).prop_map(|(i, o)| Act::Check(i, o));
    if sentinels == 0 {
        return check.boxed();
    }
    let answers = vec(
        prop_oneof![1 => Just(None), 1 => Just(Some(None)), 4 => (0..=n).prop_map(|k| Some(Some(k)))],
        sentinels,
    )
    .prop_map(Act::Answers);
    let event = (0..sentinels, kind(), 0..n, proptest::option::of(0..n))
        .prop_map(|(s, k, m, sub)| Act::Event(s, k, m, sub));
    prop_oneof![5 => check, 1 => answers, 1 => event].boxed()
}

/// The stable world the history ends in.
#[derive(Clone, Debug)]
struct Suffix {
    /// `Some(j)`: backend j is a second master with an unrelated history (a split brain).
    second: Option<usize>,
    /// Per backend other than the masters: a replica (of the first master) or dead.
    dead: Vec<bool>,
    /// Offsets and replica counts of the two masters.
    offsets: (u64, u64),
    /// Whether one sentinel keeps announcing failovers that never happen.
    liar: bool,
    /// What the sentinels name in a split brain: per sentinel, which of the two masters.
    split_names: Vec<bool>,
}

#[derive(Clone, Debug)]
struct History {
    n: usize,
    sentinels: usize,
    rise: u32,
    fall: u32,
    prefix: Vec<(u64, Act)>,
    master: usize,
    suffix: Suffix,
}

fn history() -> impl Strategy<Value = History> {
    (2..=4usize, prop_oneof![Just(0usize), Just(3usize)]).prop_flat_map(|(n, sentinels)| {
        (
            1u32..4,
            1u32..4,
            vec((0u64..1500, act(n, sentinels)), 0..60),
            0..n,
            (
                proptest::option::of(0..n),
                vec(any::<bool>(), n),
                (0u64..3, 0u64..3),
                any::<bool>(),
                vec(any::<bool>(), sentinels),
            ),
        )
            .prop_map(
                move |(rise, fall, prefix, master, (second, dead, offsets, liar, split_names))| {
                    History {
                        n,
                        sentinels,
                        rise,
                        fall,
                        prefix,
                        master,
                        suffix: Suffix {
                            second: second.filter(|&j| j != master),
                            dead,
                            offsets,
                            liar: liar && sentinels > 0,
                            split_names,
                        },
                    }
                },
            )
    })
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

/// A machine, what the shell would hold, and what the test knows it fed.
struct Proxy {
    m: Machine,
    route: Option<(String, bool)>,
    /// Route moves and withdrawals seen.
    changes: u32,
    /// Latest outcome fed per backend, and latest reply.
    last: Vec<Option<Outcome>>,
    last_reply: Vec<Option<ReplicationInfo>>,
    paused_for: Duration,
    paused_since: Option<Instant>,
}

impl Proxy {
    fn new(h: &History) -> Proxy {
        let names: Vec<Arc<str>> = (0..h.n).map(|i| Arc::from(format!("n{i}"))).collect();
        Proxy {
            m: Machine::new(
                names,
                Params {
                    rise: h.rise,
                    fall: h.fall,
                    down_after: Duration::from_secs(10),
                    sentinels: h.sentinels,
                },
            ),
            route: None,
            changes: 0,
            last: vec![None; h.n],
            last_reply: vec![None; h.n],
            paused_for: Duration::ZERO,
            paused_since: None,
        }
    }

    fn feed(&mut self, input: Input, now: Instant) -> Result<(), TestCaseError> {
        if let Input::Check {
            backend, outcome, ..
        } = &input
        {
            self.last[*backend] = Some(outcome.clone());
            if let Outcome::Reply(i) = outcome {
                self.last_reply[*backend] = Some(i.clone());
            }
        }
        for e in self.m.handle(input, now) {
            match e {
                Effect::Publish { backend, .. } => {
                    self.end_pause(now);
                    self.changes += 1;
                    self.route = Some((backend.to_string(), false));
                }
                Effect::Withdraw { .. } => {
                    self.end_pause(now);
                    self.changes += 1;
                    self.route = None;
                }
                Effect::Pause { .. } => {
                    let r = self.route.as_mut();
                    prop_assert!(r.as_ref().is_some_and(|r| !r.1), "pause of an open route");
                    if let Some(r) = r {
                        r.1 = true;
                    }
                    self.paused_since = Some(now);
                }
                Effect::Resume => {
                    let r = self.route.as_mut();
                    prop_assert!(r.as_ref().is_some_and(|r| r.1), "resume of a paused route");
                    if let Some(r) = r {
                        r.1 = false;
                    }
                    self.end_pause(now);
                }
                Effect::CheckNow | Effect::Note(_) => {}
            }
        }
        prop_assert_eq!(
            self.m.route().map(|(b, p)| (b.to_string(), p)),
            self.route.clone(),
            "effects and state agree"
        );
        self.check_route()
    }

    fn end_pause(&mut self, now: Instant) {
        if let Some(s) = self.paused_since.take() {
            self.paused_for += now - s;
        }
    }

    /// Never a wrong route.
    fn check_route(&self) -> Result<(), TestCaseError> {
        let Some((name, paused)) = &self.route else {
            return Ok(());
        };
        let b: usize = name[1..].parse().unwrap();
        prop_assert!(self.m.is_up(b), "route to a down backend {name}");
        prop_assert_eq!(
            self.last_reply[b].as_ref().map(|i| i.role),
            Some(Role::Master),
            "route to {} whose latest reply is not role:master",
            name
        );
        if !paused {
            prop_assert!(
                !matches!(self.last[b], Some(Outcome::Slow { .. })),
                "open route to {} whose latest check was slow",
                name
            );
        }
        Ok(())
    }

    fn routed(&self) -> Option<usize> {
        self.route.as_ref().map(|r| r.0[1..].parse().unwrap())
    }
}

fn input(h: &History, a: &Act) -> Input {
    match a {
        Act::Check(i, o) => Input::Check {
            backend: *i,
            addr: Some(addr(*i)),
            outcome: o.clone(),
            latency: Duration::from_millis(1),
        },
        Act::Answers(names) => Input::SentinelAnswers(
            names
                .iter()
                .map(|a| match a {
                    None => Answer::Unreachable,
                    Some(None) => Answer::NoMaster,
                    Some(Some(k)) => Answer::Names(Named {
                        label: addr(*k).to_string(),
                        backend: (*k < h.n).then_some(*k),
                    }),
                })
                .collect(),
        ),
        Act::Event(s, kind, m, sub) => Input::SentinelEvent {
            sentinel: *s,
            channel: "+selected-slave",
            kind: kind.clone(),
            master: Some(*m),
            subject: *sub,
        },
    }
}

/// One round of the stable suffix: every backend's check, then the sentinels' answers.
fn suffix_round(h: &History) -> Vec<Act> {
    let s = &h.suffix;
    let (first, second) = (h.master, s.second);
    let slaves_of = |x: usize| {
        (0..h.n)
            .filter(|&j| j != first && Some(j) != second && !s.dead[j])
            .count() as u32
            * u32::from(x == first)
    };
    let mut acts: Vec<Act> = (0..h.n)
        .map(|i| {
            let o = if i == first || Some(i) == second {
                let (id, off) = if i == first {
                    (FRESH[0], s.offsets.0)
                } else {
                    (FRESH[1], s.offsets.1)
                };
                Outcome::Reply(ReplicationInfo {
                    role: Role::Master,
                    connected_slaves: slaves_of(i),
                    master_replid: id.into(),
                    master_replid2: ZERO.into(),
                    master_repl_offset: off,
                    ..Default::default()
                })
            } else if s.dead[i] {
                Outcome::Dead {
                    reason: "refused",
                    error: "refused".into(),
                }
            } else {
                Outcome::Reply(ReplicationInfo {
                    role: Role::Replica,
                    master_replid: FRESH[0].into(),
                    master_link_up: Some(true),
                    ..Default::default()
                })
            };
            Act::Check(i, o)
        })
        .collect();
    if h.sentinels > 0 {
        let names = match second {
            None => vec![Some(Some(first)); h.sentinels],
            Some(j) => s
                .split_names
                .iter()
                .map(|&b| Some(Some(if b { first } else { j })))
                .collect(),
        };
        acts.push(Act::Answers(names));
    }
    acts
}

const ROUND: Duration = Duration::from_millis(250);
const SUFFIX: Duration = Duration::from_secs(40);
const SETTLE: Duration = Duration::from_secs(3);
const LIAR_EVERY: Duration = Duration::from_secs(8);

fn run(h: &History) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Proxy::new(h);
    for (dt, act) in &h.prefix {
        now += Duration::from_millis(*dt);
        a.feed(Input::Tick, now)?;
        a.feed(input(h, act), now)?;
    }
    // The stable suffix, fed to `a` and to `b`, a proxy started now.
    let mut b = Proxy::new(h);
    let start = now;
    let mut settled_changes = None;
    // Pause time is counted from here on.
    let paused_before = a.paused_for;
    if let Some(since) = a.paused_since.as_mut() {
        *since = now;
    }
    let mut holds = 0u32;
    let mut next_lie = start;
    while now < start + SUFFIX {
        if h.suffix.liar && now >= next_lie && h.suffix.second.is_none() {
            let lie = input(
                h,
                &Act::Event(h.sentinels - 1, Kind::FailoverUnderWay, h.master, None),
            );
            let before = a.m.view(now).holds.len();
            a.feed(lie.clone(), now)?;
            if a.m.view(now).holds.len() > before {
                holds += 1;
            }
            b.feed(lie, now)?;
            next_lie += LIAR_EVERY;
        }
        for act in suffix_round(h) {
            for p in [&mut a, &mut b] {
                p.feed(Input::Tick, now)?;
                p.feed(input(h, &act), now)?;
            }
            now += Duration::from_millis(2);
        }
        now += ROUND;
        if now >= start + SETTLE {
            // A split brain's choice is checked at the end; a settled world's from here on.
            if h.suffix.second.is_none() {
                for p in [&a, &b] {
                    prop_assert_eq!(
                        p.routed(),
                        Some(h.master),
                        "no route to the only healthy master {}s into the suffix",
                        (now - start).as_secs_f64()
                    );
                }
                let first = *settled_changes.get_or_insert(a.changes);
                prop_assert_eq!(a.changes, first, "the route moved with no evidence");
            }
        }
    }
    prop_assert_eq!(a.routed(), b.routed(), "two proxies, one answer");
    if let Some(j) = h.suffix.second {
        let chosen = a.routed();
        prop_assert!(
            chosen == Some(h.master) || chosen == Some(j),
            "split brain: route to one of the masters, got {:?}",
            chosen
        );
        prop_assert!(a.m.view(now).split_brain.len() == 2, "split brain shown");
    } else {
        prop_assert!(
            !a.route.as_ref().is_some_and(|r| r.1),
            "not paused at the end"
        );
        let v = a.m.view(now);
        prop_assert!(v.holds.is_empty(), "holds ended: {:?}", v.holds);
        // One hold left over from the prefix, plus the liar's.
        let paused = a.paused_for.saturating_sub(paused_before);
        prop_assert!(
            paused <= HOLD_MAX * (holds + 1) + Duration::from_millis(300),
            "paused {:?} for {} lying holds",
            paused,
            holds
        );
        if h.suffix.liar {
            prop_assert!(holds <= 1, "a liar re-armed its hold: {} holds", holds);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decisions_hold_their_invariants(h in history()) {
        run(&h)?;
    }
}
