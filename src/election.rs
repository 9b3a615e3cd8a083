//! Pure election logic: per-backend rise/fall hysteresis, and the rule that picks exactly one
//! master from what the checks (and, when configured, the sentinels) report.
//!
//! Nothing here does I/O or reads a clock, so the rules are tested with tables of cases.
//!
//! # The rules, in order
//! 1. A backend that is down, or whose last check reported `role:slave`, is never chosen.
//! 2. Lineage: when two backends report `role:master` and one's `master_replid2` equals the
//!    other's `master_replid`, the first was promoted out of the second's history and supersedes
//!    it, even when the second is the current route. This is what a Sentinel switchover looks
//!    like from outside: the promoted replica says `role:master` at once, the old master keeps
//!    saying so for ~10 s more.
//! 3. Sentinel: when a majority of the reachable sentinels name one backend and it is still a
//!    candidate, it wins.
//! 4. Stickiness: otherwise the current master is kept while it is still a candidate, so a pod
//!    that restarted empty and booted as master cannot steal the route.
//! 5. Otherwise: the candidate with connected replicas, then the highest `master_repl_offset`,
//!    then config order.
//!
//! More than one candidate left after rule 2 is a split brain: it is reported so it is logged and
//! counted, and still only one backend is chosen.

use crate::info::{ReplicationInfo, Role};

/// Rise/fall hysteresis for one backend.
#[derive(Clone, Debug, Default)]
pub struct Hysteresis {
    /// `None` until the first check: the first result is taken as it is, so the proxy has a route
    /// after its first round instead of after `rise` rounds.
    up: Option<bool>,
    /// Consecutive results that disagree with `up`.
    streak: u32,
}

impl Hysteresis {
    /// Records one check result; returns `Some(new_state)` when the state flipped (or was first
    /// set), so the caller logs transitions only.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        match self.up {
            None => {
                self.up = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(up) if up == ok => {
                self.streak = 0;
                None
            }
            Some(up) => {
                self.streak += 1;
                let needed = if up { fall } else { rise };
                if self.streak >= needed {
                    self.up = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.up == Some(true)
    }
}

/// What the election knows of one backend.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Up after hysteresis.
    pub up: bool,
    /// The last successful check's report, `None` if there was none.
    pub info: Option<&'a ReplicationInfo>,
}

/// The outcome of one election.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Index of the chosen backend, or `None`: no route.
    pub chosen: Option<usize>,
    /// Backends that report `role:master` and were not superseded by lineage; more than one is
    /// a split brain.
    pub masters: Vec<usize>,
    /// `(promoted, superseded)` pairs found by the lineage rule.
    pub superseded: Vec<(usize, usize)>,
    /// The sentinels named a backend that the election did not choose.
    pub sentinel_disagrees: bool,
}

impl Outcome {
    pub fn split_brain(&self) -> bool {
        self.masters.len() > 1
    }
}

/// Picks the one master. `current` is the backend of the route now published; `sentinel` the
/// backend a majority of the reachable sentinels name, if any.
pub fn elect(
    backends: &[Candidate<'_>],
    current: Option<usize>,
    sentinel: Option<usize>,
) -> Outcome {
    let masters: Vec<(usize, &ReplicationInfo)> = backends
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.info {
            Some(info) if c.up && info.role == Role::Master => Some((i, info)),
            _ => None,
        })
        .collect();

    let mut superseded = Vec::new();
    for &(i, a) in &masters {
        if let Some(prev) = a.previous_replid() {
            for &(j, b) in &masters {
                if i != j && b.master_replid == prev {
                    superseded.push((i, j));
                }
            }
        }
    }
    // A pair that supersede each other is impossible in real histories; if a peer makes it up,
    // neither claim is trusted and both stay candidates.
    let dropped: Vec<usize> = superseded
        .iter()
        .filter(|(i, j)| !superseded.contains(&(*j, *i)))
        .map(|&(_, j)| j)
        .collect();
    let remaining: Vec<(usize, &ReplicationInfo)> = masters
        .into_iter()
        .filter(|(i, _)| !dropped.contains(i))
        .collect();

    let is_candidate = |k: usize| remaining.iter().any(|(i, _)| *i == k);
    let chosen = if let Some(s) = sentinel.filter(|&s| is_candidate(s)) {
        Some(s)
    } else if let Some(c) = current.filter(|&c| is_candidate(c)) {
        Some(c)
    } else {
        // Highest (has replicas, offset), then lowest index: iterate in reverse so max_by_key's
        // "last maximum wins" lands on the first in config order.
        remaining
            .iter()
            .rev()
            .max_by_key(|(_, info)| (info.connected_slaves > 0, info.master_repl_offset))
            .map(|(i, _)| *i)
    };
    Outcome {
        chosen,
        masters: remaining.iter().map(|(i, _)| *i).collect(),
        superseded,
        sentinel_disagrees: sentinel.is_some() && sentinel != chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(replid: &str, replid2: &str, slaves: u32, offset: u64) -> ReplicationInfo {
        ReplicationInfo {
            role: Role::Master,
            connected_slaves: slaves,
            master_replid: replid.into(),
            master_replid2: replid2.into(),
            master_repl_offset: offset,
            ..Default::default()
        }
    }

    fn replica(replid: &str, offset: u64) -> ReplicationInfo {
        ReplicationInfo {
            role: Role::Replica,
            master_replid: replid.into(),
            master_repl_offset: offset,
            master_link_up: Some(true),
            ..Default::default()
        }
    }

    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn hysteresis_flips_after_rise_and_fall() {
        let mut h = Hysteresis::default();
        assert_eq!(
            h.observe(true, 2, 2),
            Some(true),
            "first result is taken as is"
        );
        assert_eq!(h.observe(false, 2, 2), None);
        assert_eq!(
            h.observe(true, 2, 2),
            None,
            "a pass resets the failure streak"
        );
        assert_eq!(h.observe(false, 2, 2), None);
        assert_eq!(h.observe(false, 2, 2), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.observe(true, 2, 2), None);
        assert_eq!(h.observe(true, 2, 2), Some(true));
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(false, 2, 1), Some(false));
        assert_eq!(h.observe(true, 1, 1), Some(true));
        assert_eq!(h.observe(false, 1, 1), Some(false));
    }

    /// (description, backends as (up, info), current, sentinel, expected choice, split brain)
    #[test]
    fn election_table() {
        let m_a = master("aaaa", ZERO, 2, 100);
        let m_a_alone = master("aaaa", ZERO, 0, 120);
        let promoted_b = master("bbbb", "aaaa", 0, 100);
        let r_a = replica("aaaa", 100);
        let empty_c = master("cccc", ZERO, 0, 0);
        let other_d = master("dddd", ZERO, 0, 500);
        type Row<'a> = (
            &'a str,
            Vec<(bool, Option<&'a ReplicationInfo>)>,
            Option<usize>,
            Option<usize>,
            Option<usize>,
            bool,
        );
        let rows: Vec<Row> = vec![
            (
                "no backends answered",
                vec![(false, None), (false, None)],
                None,
                None,
                None,
                false,
            ),
            (
                "only replicas",
                vec![(true, Some(&r_a)), (true, Some(&r_a))],
                Some(0),
                None,
                None,
                false,
            ),
            (
                "the master is chosen",
                vec![(true, Some(&r_a)), (true, Some(&m_a)), (true, Some(&r_a))],
                None,
                None,
                Some(1),
                false,
            ),
            (
                "a down master is never chosen",
                vec![(false, Some(&m_a)), (true, Some(&r_a))],
                Some(0),
                None,
                None,
                false,
            ),
            (
                "promoted replica supersedes the current master",
                vec![
                    (true, Some(&m_a)),
                    (true, Some(&promoted_b)),
                    (true, Some(&r_a)),
                ],
                Some(0),
                None,
                Some(1),
                false,
            ),
            (
                "promoted replica supersedes, whatever the order",
                vec![(true, Some(&promoted_b)), (true, Some(&m_a))],
                Some(1),
                None,
                Some(0),
                false,
            ),
            (
                "a restarted empty master does not steal the route",
                vec![
                    (true, Some(&m_a)),
                    (true, Some(&r_a)),
                    (true, Some(&empty_c)),
                ],
                Some(0),
                None,
                Some(0),
                true,
            ),
            (
                "unrelated masters: keep the current one",
                vec![(true, Some(&m_a_alone)), (true, Some(&other_d))],
                Some(0),
                None,
                Some(0),
                true,
            ),
            (
                "unrelated masters, no route yet: the one with replicas",
                vec![(true, Some(&other_d)), (true, Some(&m_a))],
                None,
                None,
                Some(1),
                true,
            ),
            (
                "unrelated masters, no replicas: highest offset",
                vec![(true, Some(&m_a_alone)), (true, Some(&other_d))],
                None,
                None,
                Some(1),
                true,
            ),
            (
                "tie: config order",
                vec![(true, Some(&empty_c)), (true, Some(&empty_c))],
                None,
                None,
                Some(0),
                true,
            ),
            (
                "sentinel majority picks among masters",
                vec![(true, Some(&m_a_alone)), (true, Some(&other_d))],
                Some(0),
                Some(1),
                Some(1),
                true,
            ),
            (
                "sentinel naming a replica is ignored",
                vec![(true, Some(&m_a)), (true, Some(&r_a))],
                Some(0),
                Some(1),
                Some(0),
                false,
            ),
            (
                "sentinel naming a superseded master is ignored",
                vec![(true, Some(&m_a)), (true, Some(&promoted_b))],
                Some(0),
                Some(0),
                Some(1),
                false,
            ),
            (
                "up but no report yet",
                vec![(true, None), (true, Some(&m_a))],
                None,
                None,
                Some(1),
                false,
            ),
        ];
        for (what, bs, current, sentinel, want, split) in rows {
            let cands: Vec<Candidate> = bs
                .iter()
                .map(|&(up, info)| Candidate { up, info })
                .collect();
            let out = elect(&cands, current, sentinel);
            assert_eq!(out.chosen, want, "{what}");
            assert_eq!(out.split_brain(), split, "{what}: split brain");
            if let Some(c) = out.chosen {
                assert_eq!(cands[c].info.map(|i| i.role), Some(Role::Master), "{what}");
            }
            assert_eq!(
                out.sentinel_disagrees,
                sentinel.is_some() && sentinel != want,
                "{what}"
            );
        }
    }

    #[test]
    fn mutual_supersession_trusts_neither_claim() {
        let x = master("xxxx", "yyyy", 0, 1);
        let y = master("yyyy", "xxxx", 0, 1);
        let cands = [
            Candidate {
                up: true,
                info: Some(&x),
            },
            Candidate {
                up: true,
                info: Some(&y),
            },
        ];
        let out = elect(&cands, Some(1), None);
        assert_eq!(out.chosen, Some(1));
        assert!(out.split_brain());
    }
}
