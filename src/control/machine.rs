//! The decision core: see the rules in [the module doc](super). Rule numbers in comments refer
//! to them. Nothing here does I/O or reads a clock; `now` is always an argument.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::sentinel::Kind;
use crate::redis::info::{ReplicationInfo, Role};
use crate::routing::DrainMode;

/// Rule 12: how old a reply may be to make its backend the new route.
pub const STALE_AFTER: Duration = Duration::from_millis(250);
/// Rule 6: the longest a failover event holds a master without a promotion.
pub const HOLD_MAX: Duration = Duration::from_secs(2);
/// Rule 8: how long a contradicted sentinel's failover events about that master are ignored.
pub const DISTRUST_FOR: Duration = Duration::from_secs(60);
/// Rule 4: how long a failover event corroborates a promotion it names.
pub const CORROBORATION_WINDOW: Duration = Duration::from_secs(10);
/// Rule 9: how long the sentinel majority may name a non-candidate before it is reported.
pub const DISAGREE_GRACE: Duration = Duration::from_secs(5);
/// Rule 5: INFO only, how long a successor may be gone before the history it left is trusted
/// again.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(30);
/// Rule 5: superseded histories kept.
pub const SUPERSEDED_KEPT: usize = 64;
/// After any change, checks run at the fast interval this long.
pub const FAST_PERIOD: Duration = Duration::from_secs(5);

/// Settings the rules take from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub rise: u32,
    pub fall: u32,
    /// Rule 2: suspicion that lasts this long is down.
    pub down_after: Duration,
    /// Configured sentinels (0: INFO only). Rule 9 counts a majority of these.
    pub sentinels: usize,
}

/// Rule 1: what one check said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(ReplicationInfo),
    Slow { reason: &'static str, error: String },
    Busy { error: String },
    Dead { reason: &'static str, error: String },
    Failed { reason: &'static str, error: String },
    Local { error: String },
}

impl Outcome {
    /// The metric label of a failed outcome.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Reply(_) => None,
            Outcome::Slow { reason, .. }
            | Outcome::Dead { reason, .. }
            | Outcome::Failed { reason, .. } => Some(reason),
            Outcome::Local { .. } => Some("local_resources"),
            Outcome::Busy { .. } => Some("busy"),
        }
    }
}

/// What one sentinel answered to `get-master-addr-by-name`, mapped to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// `host:port` as the sentinel said it: answers are counted by this.
    pub label: String,
    /// The configured backend it is (by name or resolved address), if any.
    pub backend: Option<usize>,
}

/// What one sentinel answered to `SENTINEL get-master-addr-by-name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T = Named> {
    /// It did not answer (down, timed out, or not a sentinel).
    Unreachable,
    /// It knows no master by that name.
    NoMaster,
    Names(T),
}

/// Something that happened, as the shell saw it.
#[derive(Clone, Debug)]
pub enum Input {
    Check {
        backend: usize,
        /// Where the name resolved, when it did.
        addr: Option<SocketAddr>,
        outcome: Outcome,
        latency: Duration,
    },
    /// One entry per configured sentinel.
    SentinelAnswers(Vec<Answer>),
    SentinelEvent {
        /// Index of the sentinel in the configuration.
        sentinel: usize,
        channel: &'static str,
        kind: Kind,
        /// The master the event is about, mapped to a backend.
        master: Option<usize>,
        /// The replica (or new master) it names, mapped to a backend.
        subject: Option<usize>,
    },
    /// Time passed (the shell calls it at [`Machine::next_deadline`]).
    Tick,
    /// A reload: backends that keep their name keep their state.
    Reconfigure {
        backends: Vec<Arc<str>>,
        params: Params,
        /// The sentinel addresses changed: what was learnt from them is dropped.
        sentinels_changed: bool,
    },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make `backend` at `addr` the route; the previous route (if any) drains with `drain`.
    Publish {
        backend: Arc<str>,
        addr: SocketAddr,
        drain: DrainMode,
    },
    /// No route; the previous one drains with `drain`.
    Withdraw {
        drain: DrainMode,
    },
    /// Rule 10: hold the current route's sessions.
    Pause {
        reason: PauseReason,
    },
    Resume,
    /// Start a check round at once.
    CheckNow,
    /// Log (and count) a transition.
    Note(Note),
}

/// A transition worth a log line and a counter; the shell maps each to both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    BackendUp {
        backend: Arc<str>,
        role: Role,
    },
    BackendDown {
        backend: Arc<str>,
        reason: &'static str,
        error: String,
    },
    RoleChanged {
        backend: Arc<str>,
        role: Role,
        was: Role,
        replid: String,
    },
    Suspect {
        backend: Arc<str>,
        reason: &'static str,
    },
    SuspectCleared {
        backend: Arc<str>,
    },
    /// Rule 2: suspect for `down_after`.
    SuspectTooLong {
        backend: Arc<str>,
    },
    HoldStarted {
        master: Arc<str>,
        sentinel: usize,
        channel: &'static str,
    },
    HoldEnded {
        master: Arc<str>,
        why: HoldEnd,
    },
    /// Rule 8: a sentinel's hold expired without a promotion.
    SentinelContradicted {
        sentinel: usize,
        master: Arc<str>,
    },
    /// Rule 8: an event from a distrusted sentinel, ignored.
    EventIgnored {
        sentinel: usize,
        channel: &'static str,
    },
    PromotionAccepted {
        promoted: Arc<str>,
        from: Arc<str>,
        by: &'static str,
    },
    /// Rule 4: the set of promotions not followed changed (empty: none left).
    Uncorroborated {
        promotions: Vec<(Arc<str>, Arc<str>)>,
    },
    HistoryTrustedAgain {
        history: String,
        why: &'static str,
    },
    /// Rule 11: the set of candidates changed while more than one (empty: resolved).
    SplitBrain {
        masters: Vec<Arc<str>>,
        chosen: Option<Arc<str>>,
    },
    SentinelDisagrees {
        named: String,
        chosen: Option<Arc<str>>,
    },
    /// Rule 12: the chosen backend's reply is not fresh; checking again.
    StaleCandidate {
        backend: Arc<str>,
    },
    /// Rule 13: the route's master answers as a replica and no master takes the route: its
    /// sessions are kept, new clients wait.
    SessionsKept {
        backend: Arc<str>,
    },
    /// Rule 13: the kept sessions close.
    KeptSessionsClosed {
        backend: Arc<str>,
        why: &'static str,
    },
}

/// Why the route is paused (rule 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// Its master's checks are slow.
    Suspect,
    /// Its master is held by a failover event.
    Hold,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Suspect => "suspect",
            PauseReason::Hold => "hold",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldEnd {
    Promoted,
    Demoted,
    Aborted,
    Expired,
    Removed,
}

/// Rule 2: rise/fall hysteresis.
#[derive(Clone, Debug, Default)]
pub struct Hysteresis {
    /// `None` until the first outcome, which is taken as it is.
    up: Option<bool>,
    /// Consecutive outcomes that disagree with `up`.
    streak: u32,
}

impl Hysteresis {
    /// Records one outcome; `Some(new_state)` when the state flipped (or was first set).
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
                if self.streak >= if up { fall } else { rise } {
                    self.up = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }

    /// Down at once, whatever the streak (rule 2: a dead outcome, or suspect too long).
    pub fn force_down(&mut self) -> bool {
        let flipped = self.up != Some(false);
        self.up = Some(false);
        self.streak = 0;
        flipped
    }

    pub fn is_up(&self) -> bool {
        self.up == Some(true)
    }
}

/// What the machine knows of one backend.
#[derive(Clone, Debug)]
struct Backend {
    name: Arc<str>,
    addr: Option<SocketAddr>,
    health: Hysteresis,
    /// Whether any outcome arrived (rule 14).
    seen: bool,
    /// The latest reply, forgotten when the backend goes down.
    info: Option<ReplicationInfo>,
    replied_at: Option<Instant>,
    /// Rule 2: since when the checks have been slow.
    suspect_since: Option<Instant>,
    last_error: Option<String>,
    last_reason: Option<&'static str>,
    latency: Option<Duration>,
}

impl Backend {
    fn new(name: Arc<str>) -> Backend {
        Backend {
            name,
            addr: None,
            health: Hysteresis::default(),
            seen: false,
            info: None,
            replied_at: None,
            suspect_since: None,
            last_error: None,
            last_reason: None,
            latency: None,
        }
    }

    fn reports_master(&self) -> bool {
        self.health.is_up() && self.info.as_ref().is_some_and(|i| i.role == Role::Master)
    }

    /// Up, not suspect, and says `role:master`.
    fn healthy_master(&self) -> bool {
        self.reports_master() && self.suspect_since.is_none()
    }

    fn replid(&self) -> Option<&str> {
        self.info.as_ref().map(|i| i.master_replid.as_str())
    }

    fn went_down(&self, reason: &'static str, error: &str) -> Note {
        Note::BackendDown {
            backend: self.name.clone(),
            reason,
            error: error.to_string(),
        }
    }

    /// After a failed or dead outcome: no longer suspect (it answered, badly); a down backend's
    /// report is forgotten (rule 2).
    fn failed(&mut self, reason: &'static str, error: String) {
        self.suspect_since = None;
        if !self.health.is_up() {
            self.info = None;
            self.replied_at = None;
        }
        self.last_error = Some(error);
        self.last_reason = Some(reason);
    }
}

/// Rule 6.
#[derive(Clone, Debug)]
struct Hold {
    master: Arc<str>,
    sentinel: usize,
    channel: &'static str,
    since: Instant,
}

/// A failover event remembered for rule 4.
#[derive(Clone, Debug)]
struct Seen {
    sentinel: usize,
    master: Arc<str>,
    subject: Option<Arc<str>>,
    at: Instant,
}

/// Rule 8.
#[derive(Clone, Debug)]
struct Distrust {
    sentinel: usize,
    master: Arc<str>,
    until: Instant,
}

/// Rule 5.
#[derive(Clone, Debug)]
struct Superseded {
    history: String,
    successor: Arc<str>,
    /// Since when the successor has not answered as a master.
    successor_gone_since: Option<Instant>,
}

/// The published route, as the machine last told the shell.
#[derive(Clone, Debug)]
struct Routed {
    backend: Arc<str>,
    addr: SocketAddr,
    paused: bool,
}

/// Rule 13: a route withdrawn while its sessions stay.
#[derive(Clone, Debug)]
struct Kept {
    backend: Arc<str>,
    addr: SocketAddr,
    since: Instant,
}

/// The decision core. See [the rules](super).
#[derive(Clone, Debug)]
pub struct Machine {
    params: Params,
    backends: Vec<Backend>,
    route: Option<Routed>,
    kept: Option<Kept>,
    holds: Vec<Hold>,
    seen: Vec<Seen>,
    distrust: Vec<Distrust>,
    /// Contradicted holds per sentinel (rule 8), for `status`.
    contradicted: Vec<u32>,
    superseded: VecDeque<Superseded>,
    answers: Vec<Answer>,
    answered: bool,
    ready: bool,
    uncorroborated: Vec<(Arc<str>, Arc<str>)>,
    split: Vec<Arc<str>>,
    disagree_since: Option<Instant>,
    disagreed: bool,
    fast_until: Option<Instant>,
    out: Vec<Effect>,
}

/// Read-only view for `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct View {
    pub backends: Vec<BackendView>,
    pub route: Option<RouteView>,
    pub split_brain: Vec<String>,
    pub uncorroborated: Vec<String>,
    pub superseded: Vec<String>,
    /// Rule 13: the demoted master whose sessions are kept, and for how long still.
    pub kept: Option<String>,
    pub holds: Vec<HoldView>,
    pub distrusted: Vec<DistrustView>,
    /// Per configured sentinel: holds it started that expired without a promotion.
    pub contradicted: Vec<u32>,
    pub sentinel_master: Option<String>,
    pub sentinel_backend: Option<String>,
    pub sentinels_answering: usize,
    pub sentinel_disagrees: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendView {
    pub name: String,
    pub addr: Option<SocketAddr>,
    pub up: bool,
    pub suspect: bool,
    pub info: Option<ReplicationInfo>,
    pub error: Option<String>,
    pub latency: Option<Duration>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct HoldView {
    pub master: String,
    /// Index of the sentinel in the configuration.
    pub sentinel: usize,
    pub channel: &'static str,
    pub left: Duration,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DistrustView {
    pub sentinel: usize,
    pub master: String,
    pub left: Duration,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteView {
    pub backend: String,
    pub addr: SocketAddr,
    pub paused: bool,
}

impl Machine {
    pub fn new(backends: Vec<Arc<str>>, params: Params) -> Machine {
        Machine {
            contradicted: vec![0; params.sentinels],
            answers: vec![Answer::Unreachable; params.sentinels],
            params,
            backends: backends.into_iter().map(Backend::new).collect(),
            route: None,
            kept: None,
            holds: Vec::new(),
            seen: Vec::new(),
            distrust: Vec::new(),
            superseded: VecDeque::new(),
            answered: false,
            ready: false,
            uncorroborated: Vec::new(),
            split: Vec::new(),
            disagree_since: None,
            disagreed: false,
            fast_until: None,
            out: Vec::new(),
        }
    }

    /// Applies one input at `now` and returns what to do, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        match input {
            Input::Check {
                backend,
                addr,
                outcome,
                latency,
            } => {
                if backend < self.backends.len() {
                    self.observe(backend, addr, outcome, latency, now);
                }
            }
            Input::SentinelAnswers(answers) => {
                let mut answers = answers;
                answers.resize(self.params.sentinels, Answer::Unreachable);
                self.answers = answers;
                self.answered = true;
            }
            Input::SentinelEvent {
                sentinel,
                channel,
                kind,
                master,
                subject,
            } => self.on_event(sentinel, channel, kind, master, subject, now),
            Input::Tick => {}
            Input::Reconfigure {
                backends,
                params,
                sentinels_changed,
            } => self.reconfigure(backends, params, sentinels_changed),
        }
        if !self.ready
            && self.backends.iter().all(|b| b.seen)
            && (self.params.sentinels == 0 || self.answered)
        {
            self.ready = true; // rule 14
        }
        if self.ready {
            self.decide(now);
        }
        let out = std::mem::take(&mut self.out);
        if out.iter().any(|e| !matches!(e, Effect::CheckNow)) {
            self.fast_until = Some(now + FAST_PERIOD);
        }
        out
    }

    /// When the machine next needs a [`Input::Tick`] (a hold or a suspicion running out).
    pub fn next_deadline(&self) -> Option<Instant> {
        let holds = self.holds.iter().map(|h| h.since + HOLD_MAX);
        let suspects = self
            .backends
            .iter()
            .filter_map(|b| b.suspect_since.map(|s| s + self.params.down_after));
        let kept = self.kept.iter().map(|k| k.since + self.params.down_after);
        holds.chain(suspects).chain(kept).min()
    }

    /// Whether checks should run at the fast interval: something changed recently, or a
    /// backend is suspect or held.
    pub fn wants_fast_checks(&self, now: Instant) -> bool {
        self.fast_until.is_some_and(|t| now < t)
            || !self.holds.is_empty()
            || self.backends.iter().any(|b| b.suspect_since.is_some())
    }

    /// The backend named `name`, if configured.
    fn index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.name == name)
    }

    fn note(&mut self, n: Note) {
        self.out.push(Effect::Note(n));
    }

    fn reconfigure(&mut self, names: Vec<Arc<str>>, params: Params, sentinels_changed: bool) {
        let mut old = std::mem::take(&mut self.backends);
        self.backends = names
            .into_iter()
            .map(|n| match old.iter().position(|b| b.name == n) {
                Some(i) => old.swap_remove(i),
                None => Backend::new(n),
            })
            .collect();
        let gone: Vec<Arc<str>> = old.into_iter().map(|b| b.name).collect();
        for h in self.holds.iter().filter(|h| gone.contains(&h.master)) {
            self.out.push(Effect::Note(Note::HoldEnded {
                master: h.master.clone(),
                why: HoldEnd::Removed,
            }));
        }
        self.holds.retain(|h| !gone.contains(&h.master));
        if sentinels_changed || params.sentinels != self.params.sentinels {
            self.holds.clear();
            self.seen.clear();
            self.distrust.clear();
            self.contradicted = vec![0; params.sentinels];
            self.answers = vec![Answer::Unreachable; params.sentinels];
            self.answered = false;
        }
        self.params = params;
    }

    /// Rules 1 and 2.
    fn observe(
        &mut self,
        i: usize,
        addr: Option<SocketAddr>,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) {
        let (rise, fall) = (self.params.rise, self.params.fall);
        let mut notes = Vec::new();
        let b = &mut self.backends[i];
        b.seen = true;
        b.latency = Some(latency);
        if addr.is_some() {
            b.addr = addr;
        }
        match outcome {
            Outcome::Reply(info) => {
                if b.health.observe(true, rise, fall) == Some(true) {
                    notes.push(Note::BackendUp {
                        backend: b.name.clone(),
                        role: info.role,
                    });
                }
                if b.suspect_since.take().is_some() {
                    notes.push(Note::SuspectCleared {
                        backend: b.name.clone(),
                    });
                }
                if let Some(old) = &b.info {
                    if old.role != info.role || old.master_replid != info.master_replid {
                        notes.push(Note::RoleChanged {
                            backend: b.name.clone(),
                            role: info.role,
                            was: old.role,
                            replid: info.master_replid.clone(),
                        });
                    }
                }
                b.info = Some(info);
                b.replied_at = Some(now);
                b.last_error = None;
                b.last_reason = None;
            }
            Outcome::Local { error } => {
                // Rule 1: no news about the backend; keep its state.
                b.last_error = Some(error);
            }
            Outcome::Slow { reason, error } => {
                if b.health.is_up() {
                    if b.suspect_since.is_none() {
                        b.suspect_since = Some(now);
                        notes.push(Note::Suspect {
                            backend: b.name.clone(),
                            reason,
                        });
                    }
                } else {
                    // Never up (or down): a slow answer is no answer.
                    b.health.observe(false, rise, fall);
                }
                b.last_error = Some(error);
                b.last_reason = Some(reason);
            }
            Outcome::Busy { error } => {
                // Rule 2: alive, role unknown. Ends suspicion; proves nothing more.
                if b.health.is_up() {
                    if b.suspect_since.take().is_some() {
                        notes.push(Note::SuspectCleared {
                            backend: b.name.clone(),
                        });
                    }
                } else {
                    b.health.observe(false, rise, fall);
                }
                b.last_error = Some(error);
                b.last_reason = Some("busy");
            }
            Outcome::Dead { reason, error } => {
                if b.health.force_down() {
                    notes.push(b.went_down(reason, &error));
                }
                b.failed(reason, error);
            }
            Outcome::Failed { reason, error } => {
                if b.health.observe(false, rise, fall) == Some(false) {
                    notes.push(b.went_down(reason, &error));
                }
                b.failed(reason, error);
            }
        }
        for n in notes {
            self.note(n);
        }
    }
}

impl Machine {
    /// Rules 6 and 8: a sentinel event.
    fn on_event(
        &mut self,
        sentinel: usize,
        channel: &'static str,
        kind: Kind,
        master: Option<usize>,
        subject: Option<usize>,
        now: Instant,
    ) {
        self.fast_until = Some(now + FAST_PERIOD);
        self.out.push(Effect::CheckNow);
        let Some(m) = master.filter(|&m| m < self.backends.len()) else {
            return;
        };
        let master = self.backends[m].name.clone();
        match kind {
            Kind::Activity => {}
            Kind::Aborted => {
                // An aborted failover corroborates nothing any more.
                self.seen.retain(|e| e.master != master);
                if let Some(pos) = self.holds.iter().position(|h| h.master == master) {
                    self.holds.remove(pos);
                    self.note(Note::HoldEnded {
                        master,
                        why: HoldEnd::Aborted,
                    });
                }
            }
            Kind::FailoverUnderWay => {
                if self.distrusted(sentinel, &master, now) {
                    self.note(Note::EventIgnored { sentinel, channel });
                    return;
                }
                let subject = subject
                    .filter(|&s| s < self.backends.len())
                    .map(|s| self.backends[s].name.clone());
                self.seen.push(Seen {
                    sentinel,
                    master: master.clone(),
                    subject,
                    at: now,
                });
                // Only a master that still answers as one, and whose history no accepted
                // promotion has left, needs holding: the rest are no candidates anyway.
                if self.backends[m].reports_master()
                    && !self.superseded(m)
                    && !self.holds.iter().any(|h| h.master == master)
                {
                    self.holds.push(Hold {
                        master: master.clone(),
                        sentinel,
                        channel,
                        since: now,
                    });
                    self.note(Note::HoldStarted {
                        master,
                        sentinel,
                        channel,
                    });
                }
            }
        }
    }

    fn distrusted(&self, sentinel: usize, master: &Arc<str>, now: Instant) -> bool {
        self.distrust
            .iter()
            .any(|d| d.sentinel == sentinel && &d.master == master && now < d.until)
    }

    /// Rule 9: the master more than half of the configured sentinels name.
    fn majority(&self) -> Option<&Named> {
        let named: Vec<&Named> = self
            .answers
            .iter()
            .filter_map(|a| match a {
                Answer::Names(n) => Some(n),
                _ => None,
            })
            .collect();
        named
            .iter()
            .find(|a| {
                named.iter().filter(|b| b.label == a.label).count() * 2 > self.params.sentinels
            })
            .copied()
    }

    fn held(&self, i: usize) -> bool {
        self.holds.iter().any(|h| h.master == self.backends[i].name)
    }

    /// Rule 5: whether `i` serves a history some accepted promotion left.
    fn superseded(&self, i: usize) -> bool {
        let b = &self.backends[i];
        b.replid().is_some_and(|r| {
            self.superseded
                .iter()
                .any(|s| s.history == r && s.successor != b.name)
        })
    }

    /// Rule 4: whether the promotion of `p` out of `m`'s history is accepted.
    fn accepted(&self, p: usize, m: usize, now: Instant) -> Option<&'static str> {
        let (pb, mb) = (&self.backends[p], &self.backends[m]);
        let history = mb.replid()?;
        if self
            .superseded
            .iter()
            .any(|s| s.history == history && s.successor == pb.name)
        {
            return Some("an earlier acceptance");
        }
        if self.params.sentinels > 0 && self.majority().is_some() {
            // Events are remembered only from trusted sentinels (rule 8), and one that arrived
            // before its sentinel was distrusted still counts: a failover slower than the hold
            // is still a failover.
            let event = self.seen.iter().any(|e| {
                e.master == mb.name
                    && e.subject.as_ref().is_none_or(|s| *s == pb.name)
                    && now.saturating_duration_since(e.at) <= CORROBORATION_WINDOW
            });
            if event {
                return Some("a sentinel failover event");
            }
            if self.majority().is_some_and(|n| n.backend == Some(p)) {
                return Some("the sentinel majority");
            }
            return None;
        }
        if !mb.healthy_master() || self.held(m) {
            Some("the old master not answering as a master")
        } else if pb.info.as_ref().is_some_and(|i| i.connected_slaves > 0) {
            Some("replicas following the promoted node")
        } else if mb.info.as_ref().is_some_and(|i| i.connected_slaves == 0) {
            Some("the old master having no replicas")
        } else {
            None
        }
    }

    /// Everything time ends: holds (rule 6), distrust (8), remembered events (4), suspicion (2).
    fn expire(&mut self, now: Instant) {
        let mut notes = Vec::new();
        let mut i = 0;
        while i < self.holds.len() {
            let h = &self.holds[i];
            if now >= h.since + HOLD_MAX {
                let h = self.holds.remove(i);
                notes.push(Note::HoldEnded {
                    master: h.master.clone(),
                    why: HoldEnd::Expired,
                });
                // Contradicted only if the master still answers as a healthy master: one that
                // died or hung meanwhile proves the sentinel right, not wrong.
                let healthy = self
                    .index(&h.master)
                    .is_some_and(|m| self.backends[m].healthy_master());
                if healthy {
                    if let Some(c) = self.contradicted.get_mut(h.sentinel) {
                        *c += 1;
                    }
                    self.distrust.push(Distrust {
                        sentinel: h.sentinel,
                        master: h.master.clone(),
                        until: now + DISTRUST_FOR,
                    });
                    notes.push(Note::SentinelContradicted {
                        sentinel: h.sentinel,
                        master: h.master,
                    });
                }
            } else {
                i += 1;
            }
        }
        self.distrust.retain(|d| now < d.until);
        self.seen
            .retain(|e| now.saturating_duration_since(e.at) <= CORROBORATION_WINDOW);
        let down_after = self.params.down_after;
        for b in &mut self.backends {
            if b.suspect_since.is_some_and(|s| now >= s + down_after) {
                b.suspect_since = None;
                b.health.force_down();
                b.info = None;
                b.replied_at = None;
                notes.push(Note::SuspectTooLong {
                    backend: b.name.clone(),
                });
            }
        }
        for n in notes {
            self.note(n);
        }
    }

    /// Rule 4: finds promotions; records accepted ones, returns the promoted nodes not followed.
    fn lineage(&mut self, now: Instant) -> Vec<usize> {
        let n = self.backends.len();
        let mut pairs = Vec::new();
        for p in 0..n {
            let Some(prev) = self.backends[p]
                .info
                .as_ref()
                .filter(|_| self.backends[p].healthy_master())
                .and_then(|i| i.previous_replid())
            else {
                continue;
            };
            for m in 0..n {
                if m != p
                    && self.backends[m].reports_master()
                    && self.backends[m].replid() == Some(prev)
                {
                    pairs.push((p, m));
                }
            }
        }
        // Two nodes that each claim to come from the other: neither claim is trusted.
        let pairs: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|&(p, m)| !pairs.contains(&(m, p)))
            .collect();
        let mut refused = Vec::new();
        let mut listed = Vec::new();
        for (p, m) in pairs {
            match self.accepted(p, m, now) {
                Some(by) => {
                    let history = self.backends[m].replid().unwrap_or_default().to_string();
                    let successor = self.backends[p].name.clone();
                    if !self
                        .superseded
                        .iter()
                        .any(|s| s.history == history && s.successor == successor)
                    {
                        if self.superseded.len() >= SUPERSEDED_KEPT {
                            self.superseded.pop_front();
                        }
                        self.superseded.push_back(Superseded {
                            history,
                            successor: successor.clone(),
                            successor_gone_since: None,
                        });
                        let from = self.backends[m].name.clone();
                        // The promotion proves right whoever announced it.
                        let cleared: Vec<usize> = self
                            .seen
                            .iter()
                            .filter(|e| e.master == from)
                            .map(|e| e.sentinel)
                            .collect();
                        self.distrust
                            .retain(|d| !(d.master == from && cleared.contains(&d.sentinel)));
                        self.note(Note::PromotionAccepted {
                            promoted: successor,
                            from,
                            by,
                        });
                    }
                }
                None => {
                    refused.push(p);
                    listed.push((self.backends[p].name.clone(), self.backends[m].name.clone()));
                }
            }
        }
        if listed != self.uncorroborated {
            self.uncorroborated = listed.clone();
            self.note(Note::Uncorroborated { promotions: listed });
        }
        refused
    }

    /// Rules 6 and 5: holds resolved by what the checks show, and histories trusted again.
    fn resolve(&mut self, now: Instant) {
        let mut notes = Vec::new();
        let mut i = 0;
        while i < self.holds.len() {
            let m = self.index(&self.holds[i].master);
            let why = match m {
                None => Some(HoldEnd::Removed),
                Some(m) if self.superseded(m) => Some(HoldEnd::Promoted),
                Some(m)
                    if self.backends[m]
                        .info
                        .as_ref()
                        .is_some_and(|i| i.role == Role::Replica) =>
                {
                    Some(HoldEnd::Demoted)
                }
                _ => None,
            };
            match why {
                Some(why) => {
                    let h = self.holds.remove(i);
                    notes.push(Note::HoldEnded {
                        master: h.master,
                        why,
                    });
                }
                None => i += 1,
            }
        }
        let majority = self.majority().and_then(|n| n.backend);
        let sentinel_authority = self.params.sentinels > 0 && self.majority().is_some();
        let backends = &self.backends;
        let mut kept = VecDeque::new();
        for mut s in std::mem::take(&mut self.superseded) {
            let successor = backends.iter().find(|b| b.name == s.successor);
            let answers_as_master = successor.is_some_and(|b| b.healthy_master());
            s.successor_gone_since = match (answers_as_master, s.successor_gone_since) {
                (true, _) => None,
                (false, since) => Some(since.unwrap_or(now)),
            };
            let reverted = successor.is_some_and(|b| {
                b.info
                    .as_ref()
                    .is_some_and(|i| i.role == Role::Replica && i.master_replid == s.history)
            });
            let followed = backends.iter().any(|b| {
                b.info
                    .as_ref()
                    .is_some_and(|i| i.role == Role::Replica && i.master_replid == s.history)
            });
            let named_back = !answers_as_master
                && followed
                && majority.is_some_and(|k| backends[k].replid() == Some(s.history.as_str()));
            // Gone for ORPHAN_AFTER: INFO only, that alone ends it; with sentinels, only if
            // their majority names the master serving the history (no replica may be left).
            let orphaned = s
                .successor_gone_since
                .is_some_and(|t| now.saturating_duration_since(t) >= ORPHAN_AFTER)
                && (!sentinel_authority
                    || majority.is_some_and(|k| backends[k].replid() == Some(s.history.as_str())));
            let why = if reverted {
                Some("the promoted node follows it again")
            } else if named_back {
                Some("the promoted node is gone; the sentinels name its master, and replicas follow it")
            } else if orphaned {
                Some("the promoted node has not answered as a master for 30 s")
            } else {
                None
            };
            match why {
                Some(why) => notes.push(Note::HistoryTrustedAgain {
                    history: s.history,
                    why,
                }),
                None => kept.push_back(s),
            }
        }
        self.superseded = kept;
        for n in notes {
            self.note(n);
        }
    }

    /// Every rule, in order, on the current state.
    fn decide(&mut self, now: Instant) {
        self.expire(now);
        let refused = self.lineage(now);
        self.resolve(now);
        let n = self.backends.len();
        let majority = self.majority().cloned();
        let excluded = |m: &Machine, i: usize| m.held(i) || m.superseded(i) || refused.contains(&i);
        // Rule 3.
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| self.backends[i].healthy_master() && !excluded(self, i))
            .collect();
        // Rule 11: the split-brain set counts a suspect master too.
        let masters: Vec<usize> = (0..n)
            .filter(|&i| self.backends[i].reports_master() && !excluded(self, i))
            .collect();
        let named = majority.as_ref().and_then(|m| m.backend);
        let chosen = named.filter(|k| candidates.contains(k)).or_else(|| {
            candidates.iter().copied().max_by_key(|&i| {
                let info = self.backends[i].info.as_ref();
                (
                    info.map(|i| i.connected_slaves),
                    info.map(|i| i.master_repl_offset),
                    std::cmp::Reverse(i),
                )
            })
        });
        self.report_split(&masters, chosen);
        self.decide_route(now, chosen, &candidates, named, &refused);
        let routed = self.route.as_ref().and_then(|r| self.index(&r.backend));
        self.report_disagreement(&majority, routed, now);
    }

    /// Rules 10, 12 and 13: what happens to the route given the election's choice.
    fn decide_route(
        &mut self,
        now: Instant,
        chosen: Option<usize>,
        candidates: &[usize],
        named: Option<usize>,
        refused: &[usize],
    ) {
        let current = self.route.as_ref().and_then(|r| self.index(&r.backend));
        // Rule 10: a suspect or held master keeps its (paused) route until down by evidence.
        let keep_paused = current.filter(|&c| {
            let b = &self.backends[c];
            let unconfirmed = b.suspect_since.is_some() || self.held(c);
            let down = !b.reports_master()
                || self.superseded(c)
                || refused.contains(&c)
                || named.is_some_and(|k| k != c && candidates.contains(&k));
            unconfirmed && !down
        });
        if let Some(c) = keep_paused {
            return self.set_paused(c, true);
        }
        let target = chosen.and_then(|t| self.backends[t].addr.map(|a| (t, a)));
        let same = match (&self.route, target) {
            (Some(r), Some((t, a))) => r.backend == self.backends[t].name && r.addr == a,
            (None, None) => true,
            _ => false,
        };
        if same {
            if let Some(c) = current {
                self.set_paused(c, false);
            }
            self.end_kept(now, refused);
            return;
        }
        // Rule 13: a paused route's held replies are never delivered.
        let was_paused = self.route.as_ref().is_some_and(|r| r.paused);
        // Rule 13: an open route whose master answers as a replica, with no master to take
        // over, keeps its sessions.
        if let (Some(c), None, false) = (current, target, was_paused) {
            let b = &self.backends[c];
            let demoted = b.health.is_up()
                && b.suspect_since.is_none()
                && b.info.as_ref().is_some_and(|i| i.role == Role::Replica)
                && !refused.contains(&c)
                && !self.held(c);
            if let (true, Some(r)) = (demoted, self.route.take()) {
                self.note(Note::SessionsKept {
                    backend: r.backend.clone(),
                });
                self.kept = Some(Kept {
                    backend: r.backend,
                    addr: r.addr,
                    since: now,
                });
                self.out.push(Effect::Withdraw {
                    drain: DrainMode::Keep,
                });
                return;
            }
        }
        let healthy_current =
            current.filter(|&c| !was_paused && self.backends[c].healthy_master() && !self.held(c));
        let drain = if healthy_current.is_some() {
            DrainMode::Graceful
        } else {
            DrainMode::Immediate
        };
        // Rule 12.
        if let Some((t, _)) = target {
            let fresh = self.backends[t]
                .replied_at
                .is_some_and(|at| now.saturating_duration_since(at) <= STALE_AFTER);
            if !fresh {
                let backend = self.backends[t].name.clone();
                self.note(Note::StaleCandidate { backend });
                self.out.push(Effect::CheckNow);
                let keep = healthy_current.is_some_and(|c| {
                    !self.superseded(c) && !refused.contains(&c) && named.is_none_or(|k| k == c)
                });
                if keep || self.route.is_none() {
                    return;
                }
                self.route = None;
                self.out.push(Effect::Withdraw { drain });
                return;
            }
        }
        match target {
            Some((t, addr)) => {
                let backend = self.backends[t].name.clone();
                self.kept = None; // made current again, or drained by the publish
                self.route = Some(Routed {
                    backend: backend.clone(),
                    addr,
                    paused: false,
                });
                self.out.push(Effect::Publish {
                    backend,
                    addr,
                    drain,
                });
            }
            None => {
                self.route = None;
                self.out.push(Effect::Withdraw { drain });
            }
        }
    }

    /// Rule 13: kept sessions close when their server stops answering (or moves), or after
    /// `health.down_after`.
    fn end_kept(&mut self, now: Instant, refused: &[usize]) {
        let Some(k) = &self.kept else { return };
        let gone = self.index(&k.backend).is_none_or(|i| {
            let b = &self.backends[i];
            !b.health.is_up() || b.addr != Some(k.addr) || refused.contains(&i)
        });
        let why = if gone {
            "its server stopped answering"
        } else if now >= k.since + self.params.down_after {
            "no master for health.down_after"
        } else {
            return;
        };
        let backend = k.backend.clone();
        self.kept = None;
        self.note(Note::KeptSessionsClosed { backend, why });
        self.out.push(Effect::Withdraw {
            drain: DrainMode::Immediate,
        });
    }

    fn set_paused(&mut self, c: usize, paused: bool) {
        let reason = if self.held(c) {
            PauseReason::Hold
        } else {
            PauseReason::Suspect
        };
        let Some(r) = self.route.as_mut() else { return };
        if r.paused != paused && r.backend == self.backends[c].name {
            r.paused = paused;
            self.out.push(if paused {
                Effect::Pause { reason }
            } else {
                Effect::Resume
            });
        }
    }

    fn report_split(&mut self, masters: &[usize], chosen: Option<usize>) {
        let names: Vec<Arc<str>> = if masters.len() > 1 {
            masters
                .iter()
                .map(|&i| self.backends[i].name.clone())
                .collect()
        } else {
            Vec::new()
        };
        if names != self.split {
            self.split = names.clone();
            let chosen = chosen.map(|i| self.backends[i].name.clone());
            self.note(Note::SplitBrain {
                masters: names,
                chosen,
            });
        }
    }

    fn report_disagreement(
        &mut self,
        majority: &Option<Named>,
        chosen: Option<usize>,
        now: Instant,
    ) {
        let disagrees = majority
            .as_ref()
            .is_some_and(|m| m.backend.is_none() || m.backend != chosen)
            && self.holds.is_empty();
        if !disagrees {
            self.disagree_since = None;
            self.disagreed = false;
            return;
        }
        let since = *self.disagree_since.get_or_insert(now);
        if !self.disagreed && now.saturating_duration_since(since) >= DISAGREE_GRACE {
            self.disagreed = true;
            let named = majority
                .as_ref()
                .map(|m| m.label.clone())
                .unwrap_or_default();
            let chosen = chosen.map(|i| self.backends[i].name.clone());
            self.note(Note::SentinelDisagrees { named, chosen });
        }
    }

    /// A snapshot for `/status`.
    pub fn view(&self, now: Instant) -> View {
        let majority = self.majority();
        View {
            backends: self
                .backends
                .iter()
                .map(|b| BackendView {
                    name: b.name.to_string(),
                    addr: b.addr,
                    up: b.health.is_up(),
                    suspect: b.suspect_since.is_some(),
                    info: b.info.clone(),
                    error: b.last_error.clone(),
                    latency: b.latency,
                })
                .collect(),
            route: self.route.as_ref().map(|r| RouteView {
                backend: r.backend.to_string(),
                addr: r.addr,
                paused: r.paused,
            }),
            split_brain: self.split.iter().map(|s| s.to_string()).collect(),
            uncorroborated: self
                .uncorroborated
                .iter()
                .map(|(p, m)| format!("{p} (out of {m}'s history)"))
                .collect(),
            superseded: self
                .superseded
                .iter()
                .map(|s| format!("{} (left for {})", s.history, s.successor))
                .collect(),
            kept: self.kept.as_ref().map(|k| {
                let left = (k.since + self.params.down_after).saturating_duration_since(now);
                format!(
                    "{} (answers as a replica; at most {:.0?} more)",
                    k.backend, left
                )
            }),
            holds: self
                .holds
                .iter()
                .map(|h| HoldView {
                    master: h.master.to_string(),
                    sentinel: h.sentinel,
                    channel: h.channel,
                    left: (h.since + HOLD_MAX).saturating_duration_since(now),
                })
                .collect(),
            distrusted: self
                .distrust
                .iter()
                .filter(|d| now < d.until)
                .map(|d| DistrustView {
                    sentinel: d.sentinel,
                    master: d.master.to_string(),
                    left: d.until.saturating_duration_since(now),
                })
                .collect(),
            contradicted: self.contradicted.clone(),
            sentinel_master: majority.map(|m| m.label.clone()),
            sentinel_backend: majority
                .and_then(|m| m.backend)
                .map(|i| self.backends[i].name.to_string()),
            sentinels_answering: self
                .answers
                .iter()
                .filter(|a| **a != Answer::Unreachable)
                .count(),
            sentinel_disagrees: self.disagreed,
        }
    }

    /// The route as the machine last published it: `(backend, paused)`.
    pub fn route(&self) -> Option<(&str, bool)> {
        self.route.as_ref().map(|r| (&*r.backend, r.paused))
    }

    /// Whether `backend` is suspect (rule 2).
    pub fn is_suspect(&self, backend: usize) -> bool {
        self.backends
            .get(backend)
            .is_some_and(|b| b.suspect_since.is_some())
    }

    /// Whether `backend` is up (rule 2).
    pub fn is_up(&self, backend: usize) -> bool {
        self.backends.get(backend).is_some_and(|b| b.health.is_up())
    }
}

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    #[test]
    fn hysteresis_flips_after_rise_and_fall() {
        let mut h = Hysteresis::default();
        assert_eq!(
            h.observe(true, 2, 2),
            Some(true),
            "first result taken as is"
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
        assert!(h.force_down(), "down at once");
        assert!(!h.force_down(), "already down");
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(false, 2, 1), Some(false));
        assert_eq!(h.observe(true, 1, 1), Some(true));
        assert_eq!(h.observe(false, 1, 1), Some(false));
    }
}
