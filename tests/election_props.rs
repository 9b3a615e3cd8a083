//! Property tests of the election (`election::elect`) and of rise/fall hysteresis
//! (`election::Hysteresis`), on generated histories of check results.
//!
//! A history is a sequence of rounds over 1–5 backends. In each round every backend's check
//! either fails or reports a role, a replication id from a three-letter alphabet (so lineage
//! matches are frequent), a `master_replid2` that is all zeros or another id of that alphabet,
//! an offset and a replica count; the sentinels name a backend or none. The rounds are fed
//! through hysteresis and the election the way the control loop does, the chosen backend
//! becoming the current route of the next round, and every outcome is checked against rules
//! restated here independently of `election.rs`:
//! - the chosen backend is in range, up, and reports `role:master`;
//! - a master whose history another up master was promoted out of is never chosen;
//! - a sentinel majority naming a remaining candidate wins;
//! - otherwise the current route stays while it is a remaining candidate (stickiness);
//! - otherwise the candidate with replicas, then the highest offset, then config order;
//! - a lone up master is always chosen.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use redis_master_proxy::election::{elect, Candidate, Hysteresis, Outcome};
use redis_master_proxy::info::{ReplicationInfo, Role};

/// Replication ids as Redis prints them: 40 hex characters.
const REPLIDS: [&str; 3] = [
    "5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21",
    "c7b2f3a9d1e04a5b8c6d7e8f9a0b1c2d3e4f5a6b",
    "a0d2b8fe5ac4fb08be2c6d4b6d5d3a1e8b0f7c11",
];
/// `master_replid2` of a node that never changed history.
const NO_HISTORY: &str = "0000000000000000000000000000000000000000";

/// One successful `INFO replication` report.
fn report() -> impl Strategy<Value = ReplicationInfo> {
    (
        any::<bool>(),
        0..REPLIDS.len(),
        // 0: no previous history; 1 or 2: one of the other ids.
        0..3usize,
        prop_oneof![3 => 0u64..4, 1 => any::<u64>()],
        prop_oneof![2 => Just(0u32), 1 => 1u32..3],
    )
        .prop_map(|(is_master, id, prev, offset, slaves)| {
            let replid2 = match prev {
                0 => NO_HISTORY,
                k => REPLIDS[(id + k) % REPLIDS.len()],
            };
            ReplicationInfo {
                role: if is_master {
                    Role::Master
                } else {
                    Role::Replica
                },
                connected_slaves: if is_master { slaves } else { 0 },
                master_replid: REPLIDS[id].to_string(),
                master_replid2: replid2.to_string(),
                master_repl_offset: offset,
                master_link_up: (!is_master).then_some(true),
                ..Default::default()
            }
        })
}

/// One backend's check result in one round: `None` when the check failed.
fn check() -> impl Strategy<Value = Option<ReplicationInfo>> {
    prop_oneof![1 => Just(None), 3 => report().prop_map(Some)]
}

/// A round: every backend's check result, and the backend a sentinel majority names
/// (sometimes an index past the end, which the election must ignore).
#[derive(Clone, Debug)]
struct Round {
    checks: Vec<Option<ReplicationInfo>>,
    sentinel: Option<usize>,
}

/// A history: the number of backends, rise, fall, and the rounds.
fn history() -> impl Strategy<Value = (usize, u32, u32, Vec<Round>)> {
    (1..=5usize).prop_flat_map(|n| {
        let round = (
            vec(check(), n),
            prop_oneof![1 => Just(None), 1 => option::of(0..=n)],
        )
            .prop_map(|(checks, sentinel)| Round { checks, sentinel });
        (Just(n), 1u32..4, 1u32..4, vec(round, 1..16))
    })
}

fn is_up_master(c: &Candidate<'_>) -> bool {
    c.up && c.info.is_some_and(|i| i.role == Role::Master)
}

/// Whether another up master was promoted out of `k`'s history (its `master_replid2` is `k`'s
/// `master_replid`), and `k` does not claim the same of it.
fn superseded(cands: &[Candidate<'_>], k: usize) -> bool {
    let Some(mine) = cands[k].info else {
        return false;
    };
    let prev = |i: &ReplicationInfo| i.previous_replid().map(str::to_string);
    cands.iter().enumerate().any(|(j, c)| {
        j != k
            && is_up_master(c)
            && c.info.is_some_and(|other| {
                prev(other).as_deref() == Some(mine.master_replid.as_str())
                    && prev(mine).as_deref() != Some(other.master_replid.as_str())
            })
    })
}

/// Checks one outcome against the rules; returns the reason when one is broken.
fn check_outcome(
    cands: &[Candidate<'_>],
    current: Option<usize>,
    sentinel: Option<usize>,
    out: &Outcome,
) -> Result<(), TestCaseError> {
    let up_masters: Vec<usize> = (0..cands.len())
        .filter(|&i| is_up_master(&cands[i]))
        .collect();
    let remaining: Vec<usize> = up_masters
        .iter()
        .copied()
        .filter(|&i| !superseded(cands, i))
        .collect();

    if let Some(c) = out.chosen {
        prop_assert!(c < cands.len(), "chose {c} of {} backends", cands.len());
        prop_assert!(cands[c].up, "chose backend {c}, which is down");
        prop_assert_eq!(
            cands[c].info.map(|i| i.role),
            Some(Role::Master),
            "chose backend {}, which is not a master",
            c
        );
        prop_assert!(!superseded(cands, c), "chose {c}, superseded by lineage");
    }
    prop_assert_eq!(&out.masters, &remaining, "the remaining masters");
    prop_assert_eq!(out.split_brain(), remaining.len() > 1);
    for &(promoted, old) in &out.superseded {
        let (p, o) = (cands[promoted].info, cands[old].info);
        prop_assert!(is_up_master(&cands[promoted]) && is_up_master(&cands[old]));
        prop_assert_eq!(
            p.and_then(|i| i.previous_replid()),
            o.map(|i| i.master_replid.as_str())
        );
    }
    if up_masters.len() == 1 {
        prop_assert_eq!(out.chosen, Some(up_masters[0]), "the only up master");
    }

    let want = if let Some(s) = sentinel.filter(|s| remaining.contains(s)) {
        Some(s)
    } else if let Some(c) = current.filter(|c| remaining.contains(c)) {
        Some(c)
    } else {
        // First in config order among those with the best (has replicas, offset).
        let key = |i: usize| {
            let info = cands[i].info.expect("an up master has a report");
            (info.connected_slaves > 0, info.master_repl_offset)
        };
        remaining
            .iter()
            .copied()
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if key(b) >= key(i) => Some(b),
                _ => Some(i),
            })
    };
    prop_assert_eq!(out.chosen, want, "masters {:?}", remaining);
    if sentinel.is_none() {
        if let Some(c) = current.filter(|c| remaining.contains(c)) {
            prop_assert_eq!(out.chosen, Some(c), "the route must stay on {}", c);
        }
    }
    prop_assert_eq!(
        out.sentinel_disagrees,
        sentinel.is_some() && sentinel != out.chosen
    );
    Ok(())
}

/// Feeds a history through hysteresis and the election as the control loop does, and hands
/// every round's election to `f`.
fn simulate(
    (n, rise, fall, rounds): &(usize, u32, u32, Vec<Round>),
    mut f: impl FnMut(
        &[Candidate<'_>],
        Option<usize>,
        Option<usize>,
        &Outcome,
    ) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut health = vec![Hysteresis::default(); *n];
    let mut last: Vec<Option<ReplicationInfo>> = vec![None; *n];
    let mut current = None;
    for round in rounds {
        for (i, result) in round.checks.iter().enumerate() {
            match result {
                Some(info) => {
                    health[i].observe(true, *rise, *fall);
                    last[i] = Some(info.clone());
                }
                None => {
                    health[i].observe(false, *rise, *fall);
                    // A backend still up (fall not reached) keeps its last report.
                    if !health[i].is_up() {
                        last[i] = None;
                    }
                }
            }
        }
        let cands: Vec<Candidate<'_>> = (0..*n)
            .map(|i| Candidate {
                up: health[i].is_up(),
                info: last[i].as_ref(),
            })
            .collect();
        let out = elect(&cands, current, round.sentinel);
        f(&cands, current, round.sentinel, &out)?;
        current = out.chosen;
    }
    Ok(())
}

/// The generated histories are only worth something if they reach every rule: count, over a
/// fixed sample, the rounds where each rule decided, and require each to have happened.
#[test]
fn generated_histories_reach_every_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = history();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..256 {
        let h = strategy.new_tree(&mut runner).unwrap().current();
        simulate(&h, |cands, current, sentinel, out| {
            let remaining = |k: &usize| out.masters.contains(k);
            let current_stays = current.filter(remaining).is_some();
            let rule = if out.chosen.is_none() {
                "no master"
            } else if current.is_some_and(|c| out.superseded.iter().any(|&(_, old)| old == c)) {
                "promotion supersedes the route"
            } else if sentinel.filter(remaining).is_some() && current_stays && sentinel != current {
                "sentinel moves the route"
            } else if current_stays && out.masters.len() > 1 {
                "route sticks in a split brain"
            } else if !current_stays && out.masters.len() > 1 {
                "best of several masters"
            } else if cands.iter().filter(|c| is_up_master(c)).count() == 1 {
                "lone master"
            } else {
                "other"
            };
            *seen.entry(rule).or_default() += 1;
            if out
                .superseded
                .iter()
                .any(|&(a, b)| out.superseded.contains(&(b, a)))
            {
                *seen.entry("mutual supersession").or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
    }
    for rule in [
        "no master",
        "promotion supersedes the route",
        "sentinel moves the route",
        "route sticks in a split brain",
        "best of several masters",
        "lone master",
        "mutual supersession",
    ] {
        assert!(
            seen.get(rule).copied().unwrap_or(0) >= 3,
            "the generator rarely reaches `{rule}`: {seen:?}"
        );
    }
}

proptest! {
    /// Rounds fed through hysteresis and the election as the control loop does.
    #[test]
    fn election_over_a_history_of_checks(h in history()) {
        simulate(&h, check_outcome)?;
    }

    /// One election with any current route and sentinel choice, in range or not, and backends
    /// that are up without a report yet.
    #[test]
    fn election_with_any_route_and_sentinel(
        backends in vec((any::<bool>(), option::of(report())), 1..=5),
        current in option::of(0..7usize),
        sentinel in option::of(0..7usize),
    ) {
        let cands: Vec<Candidate<'_>> = backends
            .iter()
            .map(|(up, info)| Candidate { up: *up, info: info.as_ref() })
            .collect();
        let out = elect(&cands, current, sentinel);
        check_outcome(&cands, current, sentinel, &out)?;
    }

    /// The state flips only once the last `fall` results (when up) or `rise` results (when down)
    /// all disagree with it; the first result is taken as it is; `observe` says when it flipped.
    #[test]
    fn hysteresis_flips_after_rise_or_fall_in_a_row(
        results in vec(any::<bool>(), 1..40),
        rise in 1u32..5,
        fall in 1u32..5,
    ) {
        let mut h = Hysteresis::default();
        let mut state: Option<bool> = None;
        for (t, &ok) in results.iter().enumerate() {
            let next = match state {
                None => ok,
                Some(up) => {
                    let needed = usize::try_from(if up { fall } else { rise }).unwrap();
                    let run = results[..=t].iter().rev().take_while(|&&r| r != up).count();
                    if run >= needed { !up } else { up }
                }
            };
            let flipped = h.observe(ok, rise, fall);
            let want = (state != Some(next)).then_some(next);
            prop_assert_eq!(flipped, want, "result {} ({}) of {:?}", t, ok, results);
            prop_assert_eq!(h.is_up(), next);
            state = Some(next);
        }
    }
}
