//! The control plane's loop: check every backend each round, apply hysteresis, elect, publish.
//!
//! A round checks all backends concurrently (each bounded by `health.timeout`), then runs the
//! pure election of `election.rs` on the results and publishes the outcome to the
//! [`RouteTable`]. Logs and counters fire on transitions only (a backend going down, a role
//! change, a new master, a split brain appearing), never on every tick.
//!
//! After anything changes (a role, a replication id, the route), rounds run every
//! [`FAST_INTERVAL`] for [`FAST_PERIOD`], so a switch in progress is followed in tens of
//! milliseconds rather than at the next one-second tick.
//!
//! With sentinels configured, each round also asks every sentinel for the master (majority of
//! the reachable ones, fed to the election), and the sentinels' failover events arrive between
//! rounds: any event triggers an immediate round; an event that says a failover of the current
//! master is committed ("a replica was selected/promoted", "+switch-master") **holds** the old
//! master at once: the route is withdrawn (sessions closed, new clients wait for the new master)
//! and the old master is not routed to again until it is demoted, the failover is aborted, or
//! the hold expires. A request that was never forwarded to the old master is never acknowledged
//! by it, so it cannot be lost with it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HostPort};
use crate::election::{self, Candidate, Hysteresis};
use crate::health::{self, CheckError};
use crate::info::{ReplicationInfo, Role};
use crate::metrics as m;
use crate::routing::{DrainMode, RouteTable};
use crate::sentinel::{self, Kind};

/// Interval of rounds while something is changing.
pub const FAST_INTERVAL: Duration = Duration::from_millis(50);

/// A finished piece of control-plane I/O.
enum Done {
    Check(HostPort, health::Report),
    Sentinels(Vec<Option<Option<HostPort>>>),
}
/// How long the fast interval lasts after the last change.
pub const FAST_PERIOD: Duration = Duration::from_secs(5);

/// How long a failover event keeps the old master out of the route when nothing else ends the
/// hold (the old master is demoted, or the failover is aborted).
pub const FAILOVER_HOLD: Duration = Duration::from_secs(10);
/// How long the sentinels may name another master than the election before it counts as a
/// disagreement (they trail INFO during every failover).
pub const DISAGREE_GRACE: Duration = Duration::from_secs(5);
/// Superseded replication histories remembered (a few per failover are enough).
pub const SUPERSEDED_KEPT: usize = 64;
/// How old a report may be to make its backend the new master (see `elect_and_publish`).
pub const STALE_AFTER: Duration = Duration::from_millis(250);

/// The old master of a failover in progress, kept out of the route.
#[derive(Clone, Debug)]
struct Hold {
    addr: SocketAddr,
    until: Instant,
    event: &'static str,
}

/// What the control loop knows of one backend between rounds.
#[derive(Debug)]
struct Backend {
    config: HostPort,
    /// `host:port` as configured, shared with routes and metric labels.
    name: Arc<str>,
    health: Hysteresis,
    /// The last successful check's report; cleared when a check fails so a down backend's
    /// stale role never counts.
    info: Option<ReplicationInfo>,
    /// The address the last check resolved.
    addr: Option<SocketAddr>,
    last_error: Option<CheckError>,
    last_latency: Option<Duration>,
    /// When `info` was last confirmed by a check: a new master is only published on a fresh
    /// report, never on one that may predate a demotion.
    checked_at: Option<Instant>,
    /// Reason label of the last failure, to log a changed reason once.
    last_reason: Option<&'static str>,
}

/// A snapshot for `/status` and the `status` command. Secrets never enter it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub backends: Vec<BackendStatus>,
    pub master: Option<MasterStatus>,
    /// Completed check rounds.
    pub rounds: u64,
    /// Whether a split brain was seen in the last round.
    pub split_brain: bool,
    /// The sentinels' view, when configured.
    pub sentinel: Option<SentinelStatus>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SentinelStatus {
    /// The master a majority of the reachable sentinels name (`host:port` as they name it).
    pub master: Option<String>,
    /// The configured backend it maps to.
    pub backend: Option<String>,
    pub reachable: usize,
    pub configured: usize,
    /// The sentinels name a master the INFO checks do not confirm.
    pub disagrees: bool,
    /// The old master held out of the route during a failover, and the event that started it.
    pub hold: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendStatus {
    pub backend: String,
    pub address: Option<String>,
    pub up: bool,
    /// Why the last check failed; `None` when it passed.
    pub error: Option<String>,
    pub role: Option<Role>,
    pub repl_offset: Option<u64>,
    /// Bytes behind the current master's offset (replicas of it only).
    pub lag_bytes: Option<u64>,
    pub master_link_up: Option<bool>,
    pub connected_replicas: Option<u32>,
    pub last_check_ms: Option<f64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MasterStatus {
    pub backend: String,
    pub address: String,
    pub epoch: u64,
    /// Unix time (seconds) of the last route change.
    pub since_unix: u64,
}

/// The control loop's state.
pub struct Control {
    backends: Vec<Backend>,
    cfg: Arc<Config>,
    table: Arc<RouteTable>,
    status: Arc<ArcSwap<Status>>,
    /// The sentinels' view from the last round.
    sentinel_view: SentinelStatus,
    /// The backend the sentinels' majority names (index), for the election.
    sentinel_choice: Option<usize>,
    hold: Option<Hold>,
    /// Run rounds at [`FAST_INTERVAL`] until then.
    fast_until: Option<Instant>,
    /// The split brain masters last logged, so a standing conflict is logged once.
    last_conflict: Vec<usize>,
    /// Whether the standing sentinel disagreement has been logged and counted.
    sentinel_disagreed: bool,
    /// When the sentinels started to disagree with the election.
    disagree_since: Option<Instant>,
    rounds: u64,
    since: Option<SystemTime>,
    /// False until the first round (every backend and the sentinels) has answered: no
    /// election runs on a partial view at startup.
    ready: bool,
    /// The election wanted a fresher report: start a round at once.
    recheck: bool,
    /// Replication histories some node has been promoted out of (newest last). A master still
    /// serving one of them is an old master that has not been demoted yet, even when the node
    /// that superseded it has died since (a switchover followed by a kill of the new master):
    /// it is never a candidate.
    superseded: std::collections::VecDeque<String>,
}

impl Control {
    pub fn new(cfg: Arc<Config>, table: Arc<RouteTable>, status: Arc<ArcSwap<Status>>) -> Control {
        let mut c = Control {
            backends: Vec::new(),
            cfg: cfg.clone(),
            table,
            status,
            sentinel_view: SentinelStatus::default(),
            sentinel_choice: None,
            hold: None,
            fast_until: None,
            last_conflict: Vec::new(),
            sentinel_disagreed: false,
            disagree_since: None,
            rounds: 0,
            since: None,
            ready: false,
            recheck: false,
            superseded: std::collections::VecDeque::new(),
        };
        c.reconfigure(cfg);
        c
    }

    /// Takes a new configuration: backends that stay keep their state (so a reload does not
    /// reset hysteresis or move the route); new ones start unknown; removed ones are dropped.
    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        let mut old = std::mem::take(&mut self.backends);
        self.backends = cfg
            .backends
            .iter()
            .map(|hp| match old.iter().position(|b| &b.config == hp) {
                Some(i) => old.swap_remove(i),
                None => Backend {
                    config: hp.clone(),
                    name: Arc::from(hp.to_string()),
                    health: Hysteresis::default(),
                    info: None,
                    addr: None,
                    last_error: None,
                    last_latency: None,
                    checked_at: None,
                    last_reason: None,
                },
            })
            .collect();
        for gone in old {
            tracing::info!(backend = %gone.name, "backend removed from the configuration");
            for (name, v) in [(m::BACKEND_UP, 0.0), (m::MASTER_INFO, 0.0)] {
                metrics::gauge!(name, "backend" => gone.name.to_string()).set(v);
            }
        }
        metrics::gauge!(m::CLIENT_MAX).set(cfg.max_connections as f64);
        self.cfg = cfg;
    }

    /// Runs until `shutdown`: starts a round of checks every interval, and reacts to each
    /// check as it completes, to reloads and to sentinel events.
    ///
    /// Checks are not waited for as a batch: each result is applied (and the election rerun)
    /// the moment it arrives, and a backend whose check is still running (a hung server, held
    /// to the timeout) is simply skipped by the next round. So a promoted replica's first
    /// `role:master` answer moves the route at once, whatever its hung old master is doing.
    /// Only the very first election waits for the whole first round (checks and sentinels), so
    /// the proxy never starts on a partial view.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reloads: mpsc::Receiver<Arc<Config>>,
        mut events: mpsc::Receiver<sentinel::Resolved>,
    ) {
        let (tx, mut done) = mpsc::unbounded_channel::<Done>();
        let mut in_flight: HashSet<HostPort> = HashSet::new();
        let mut sentinels_in_flight = false;
        // What the first round still waits for before the first election.
        let mut first: Option<(HashSet<HostPort>, bool)> = Some((
            self.backends.iter().map(|b| b.config.clone()).collect(),
            self.cfg.sentinel.is_some(),
        ));
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {
                    self.launch(&tx, &mut in_flight, &mut sentinels_in_flight);
                    self.rounds += 1;
                    next = tokio::time::Instant::now() + self.interval();
                }
                Some(d) = done.recv() => {
                    let mut changed = false;
                    match d {
                        Done::Check(hp, report) => {
                            in_flight.remove(&hp);
                            if let Some(i) = self.backends.iter().position(|b| b.config == hp) {
                                changed |= self.observe(i, report);
                            }
                            if let Some((waiting, _)) = first.as_mut() {
                                waiting.remove(&hp);
                            }
                        }
                        Done::Sentinels(answers) => {
                            sentinels_in_flight = false;
                            self.apply_sentinel_answers(answers).await;
                            if let Some((_, s)) = first.as_mut() {
                                *s = false;
                            }
                        }
                    }
                    if first.as_ref().is_some_and(|(w, s)| w.is_empty() && !s) {
                        first = None;
                        self.ready = true;
                    }
                    changed |= self.elect_and_publish();
                    if changed {
                        self.fast_until = Some(Instant::now() + FAST_PERIOD);
                        next = next.min(tokio::time::Instant::now() + FAST_INTERVAL);
                    }
                    if std::mem::take(&mut self.recheck) {
                        next = tokio::time::Instant::now();
                    }
                    self.publish_status();
                }
                Some(cfg) = reloads.recv() => {
                    self.reconfigure(cfg);
                    if let Some((waiting, s)) = first.as_mut() {
                        waiting.retain(|hp| self.backends.iter().any(|b| &b.config == hp));
                        *s &= self.cfg.sentinel.is_some();
                    }
                    next = tokio::time::Instant::now();
                }
                Some(ev) = events.recv() => {
                    self.on_sentinel_event(ev);
                    // Take whatever else arrived in the same burst, then check at once.
                    while let Ok(ev) = events.try_recv() {
                        self.on_sentinel_event(ev);
                    }
                    self.publish_status();
                    next = tokio::time::Instant::now();
                }
            }
        }
    }

    /// The interval to the next round: fast while something is changing.
    fn interval(&self) -> Duration {
        if self.fast_until.is_some_and(|t| Instant::now() < t) {
            FAST_INTERVAL.min(self.cfg.health.interval.0)
        } else {
            self.cfg.health.interval.0
        }
    }

    /// Starts a check of every backend that has none running, and a sentinel query.
    fn launch(
        &self,
        tx: &mpsc::UnboundedSender<Done>,
        in_flight: &mut HashSet<HostPort>,
        sentinels_in_flight: &mut bool,
    ) {
        let timeout = self.cfg.health.timeout.0;
        for b in &self.backends {
            if !in_flight.insert(b.config.clone()) {
                continue; // still checking (a hung backend holds its check to the timeout)
            }
            let (hp, auth, tx) = (b.config.clone(), self.cfg.auth.clone(), tx.clone());
            tokio::spawn(async move {
                let report = health::check(&hp, auth.as_ref(), timeout).await;
                let _ = tx.send(Done::Check(hp, report));
            });
        }
        if self.cfg.sentinel.is_some() && !*sentinels_in_flight {
            *sentinels_in_flight = true;
            let (fut, tx) = (self.query_sentinels(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(Done::Sentinels(fut.await));
            });
        }
    }

    /// A sentinel event: hold the old master when a failover of it is committed, release the
    /// hold when it is aborted; in every case the caller runs a round at once.
    pub fn on_sentinel_event(&mut self, ev: sentinel::Resolved) {
        self.fast_until = Some(Instant::now() + FAST_PERIOD);
        match ev.event.kind {
            Kind::FailoverUnderWay => {
                let Some(old) = ev.old_master else { return };
                let held_now = self.hold.as_ref().is_some_and(|h| h.addr == old);
                self.hold = Some(Hold {
                    addr: old,
                    until: Instant::now() + FAILOVER_HOLD,
                    event: ev.event.channel,
                });
                if !held_now {
                    tracing::warn!(old_master = %old, event = ev.event.channel, sentinel = %ev.sentinel, "failover under way: the old master gets no more client requests");
                }
                self.elect_and_publish();
            }
            Kind::Aborted => {
                if self.hold.take().is_some() {
                    tracing::warn!(event = ev.event.channel, sentinel = %ev.sentinel, "failover aborted: the old master may be routed to again");
                }
            }
            Kind::Activity => {}
        }
    }

    /// Asks every configured sentinel for the master, concurrently with the checks.
    fn query_sentinels(
        &self,
    ) -> impl std::future::Future<Output = Vec<Option<Option<HostPort>>>> + 'static {
        let sc = self.cfg.sentinel.clone();
        let timeout = self.cfg.health.timeout.0;
        async move {
            let Some(sc) = sc else { return Vec::new() };
            let mut set = tokio::task::JoinSet::new();
            for (i, addr) in sc.addresses.iter().enumerate() {
                let (addr, auth, name) = (addr.clone(), sc.auth.clone(), sc.master_name.clone());
                set.spawn(async move {
                    let r = sentinel::query_master(&addr, auth.as_ref(), &name, timeout).await;
                    (i, addr, r)
                });
            }
            let mut answers = vec![None; sc.addresses.len()];
            while let Some(Ok((i, addr, r))) = set.join_next().await {
                let label = addr.to_string();
                match r {
                    Ok(a) => answers[i] = Some(a),
                    Err(e) => {
                        tracing::debug!(sentinel = %label, error = %e, "sentinel query failed");
                        metrics::gauge!(m::SENTINEL_UP, "sentinel" => label).set(0.0);
                    }
                }
            }
            answers
        }
    }

    /// Maps the sentinels' majority to a configured backend (by resolved address, so IPs that
    /// sentinels announce match host names in the config).
    async fn apply_sentinel_answers(&mut self, answers: Vec<Option<Option<HostPort>>>) {
        let Some(sc) = &self.cfg.sentinel else {
            self.sentinel_choice = None;
            self.sentinel_view = SentinelStatus::default();
            return;
        };
        let named = sentinel::majority(&answers);
        let addr = match &named {
            Some(hp) => health::resolve(hp).await.ok(),
            None => None,
        };
        self.sentinel_choice = named.as_ref().and_then(|hp| {
            self.backends
                .iter()
                .position(|b| &b.config == hp || (addr.is_some() && b.addr == addr))
        });
        self.sentinel_view = SentinelStatus {
            master: named.map(|hp| hp.to_string()),
            backend: self
                .sentinel_choice
                .map(|i| self.backends[i].name.to_string()),
            reachable: answers.iter().filter(|a| a.is_some()).count(),
            configured: sc.addresses.len(),
            disagrees: self.sentinel_disagreed,
            hold: None,
        };
    }

    /// Applies one check report; returns whether something that matters to the election
    /// changed (up/down, role, replication id).
    fn observe(&mut self, i: usize, report: health::Report) -> bool {
        let rise = self.cfg.health.rise;
        let fall = self.cfg.health.fall;
        // Any node that changed history names the history it left: remember it, so a master
        // still serving it is never routed to again (see `superseded`).
        if let Some(prev) = report
            .result
            .as_ref()
            .ok()
            .and_then(|i| i.previous_replid())
        {
            if !self.superseded.iter().any(|r| r == prev) {
                if self.superseded.len() >= SUPERSEDED_KEPT {
                    self.superseded.pop_front();
                }
                self.superseded.push_back(prev.to_string());
            }
        }
        let b = &mut self.backends[i];
        let label = b.name.to_string();
        metrics::histogram!(m::CHECK_DURATION, "backend" => label.clone())
            .record(report.latency.as_secs_f64());
        b.last_latency = Some(report.latency);
        if report.addr.is_some() {
            b.addr = report.addr;
        }
        let mut changed = false;
        match report.result {
            Ok(info) => {
                let flipped = b.health.observe(true, rise, fall);
                if flipped == Some(true) {
                    tracing::info!(backend = %b.name, addr = ?b.addr, role = info.role.as_str(), "backend up");
                }
                if let Some(old) = &b.info {
                    if old.role != info.role || old.master_replid != info.master_replid {
                        tracing::info!(
                            backend = %b.name,
                            role = info.role.as_str(),
                            was = old.role.as_str(),
                            replid = %info.master_replid,
                            replid2 = %info.master_replid2,
                            "backend replication state changed"
                        );
                        changed = true;
                    }
                }
                changed |= flipped.is_some();
                b.last_error = None;
                b.last_reason = None;
                b.info = Some(info);
                b.checked_at = Some(Instant::now());
            }
            Err(CheckError::Local(msg)) => {
                // Our own descriptor shortage is no news about the backend: keep its state,
                // so sessions and the route survive the proxy running at its limit.
                metrics::counter!(m::CHECK_FAILURES, "backend" => label.clone(), "reason" => "local_resources")
                    .increment(1);
                if b.last_reason != Some("local_resources") {
                    tracing::warn!(backend = %b.name, error = %msg, "check skipped: the proxy is out of descriptors; the backend keeps its state");
                }
                b.last_reason = Some("local_resources");
            }
            Err(err) => {
                let reason = err.reason();
                metrics::counter!(m::CHECK_FAILURES, "backend" => label.clone(), "reason" => reason)
                    .increment(1);
                let flipped = b.health.observe(false, rise, fall);
                if flipped == Some(false) {
                    tracing::warn!(backend = %b.name, reason, error = %err, "backend down");
                } else if b.last_reason != Some(reason) && !b.health.is_up() {
                    tracing::info!(backend = %b.name, reason, error = %err, "backend still down, for another reason");
                }
                changed |= flipped.is_some();
                b.last_reason = Some(reason);
                b.last_error = Some(err);
                if !b.health.is_up() {
                    b.info = None;
                }
            }
        }
        let up = b.health.is_up();
        metrics::gauge!(m::BACKEND_UP, "backend" => label.clone()).set(if up { 1.0 } else { 0.0 });
        if let Some(info) = &b.info {
            for role in [Role::Master, Role::Replica] {
                let v = if info.role == role { 1.0 } else { 0.0 };
                metrics::gauge!(m::BACKEND_ROLE, "backend" => label.clone(), "role" => role.as_str())
                    .set(v);
            }
            metrics::gauge!(m::BACKEND_REPL_OFFSET, "backend" => label)
                .set(info.master_repl_offset as f64);
        }
        changed
    }

    /// Runs the election on the current state and publishes its choice.
    fn elect_and_publish(&mut self) -> bool {
        if !self.ready {
            return false;
        }
        let current = self
            .table
            .load()
            .and_then(|r| self.backends.iter().position(|b| b.name == r.backend));
        let sentinel = self.sentinel_choice;
        // The hold ends once the old master is demoted or its time is up.
        if let Some(h) = &self.hold {
            let demoted = self.backends.iter().any(|b| {
                b.addr == Some(h.addr) && b.info.as_ref().is_some_and(|i| i.role == Role::Replica)
            });
            if demoted || Instant::now() >= h.until {
                tracing::info!(old_master = %h.addr, demoted, "failover hold released");
                self.hold = None;
            }
        }
        let held = self.hold.as_ref().map(|h| h.addr);
        let stale_history = |b: &Backend| {
            b.info.as_ref().is_some_and(|i| {
                i.role == Role::Master && self.superseded.iter().any(|r| *r == i.master_replid)
            })
        };
        let cands: Vec<Candidate> = self
            .backends
            .iter()
            .map(|b| Candidate {
                up: b.health.is_up() && (held.is_none() || b.addr != held) && !stale_history(b),
                info: b.info.as_ref(),
            })
            .collect();
        let out = election::elect(&cands, current, sentinel);

        if out.split_brain() {
            if out.masters != self.last_conflict {
                let names: Vec<&str> = out
                    .masters
                    .iter()
                    .map(|&i| &*self.backends[i].name)
                    .collect();
                tracing::error!(masters = ?names, chosen = ?out.chosen.map(|i| &*self.backends[i].name), "split brain: more than one backend reports role:master with unrelated histories; routing to one only");
                metrics::counter!(m::SPLIT_BRAIN).increment(1);
                self.last_conflict = out.masters.clone();
            }
        } else {
            self.last_conflict.clear();
        }
        // The current master lost the route to a promotion out of its history: either both
        // are seen now (the lineage rule) or the history was already known to be left.
        if let Some(c) = current.filter(|&c| !cands[c].up && self.backends[c].health.is_up()) {
            let old = &self.backends[c];
            if let Some(replid) = old.info.as_ref().map(|i| i.master_replid.as_str()) {
                if self.superseded.iter().any(|r| r == replid) {
                    let promoted = self.backends.iter().find(|b| {
                        b.info.as_ref().and_then(|i| i.previous_replid()) == Some(replid)
                    });
                    tracing::warn!(
                        promoted = ?promoted.map(|b| &*b.name),
                        demoted = %old.name,
                        "a replica was promoted out of the current master's history; switching now, while the old master still reports role:master"
                    );
                }
            }
        }
        // Sentinels lag INFO by a second or two during every failover (they announce the
        // switch after the promotion is visible), so only a disagreement that outlasts
        // DISAGREE_GRACE is drift worth a log line, a counter and an alert.
        if out.sentinel_disagrees && self.hold.is_none() {
            let since = *self.disagree_since.get_or_insert_with(Instant::now);
            if !self.sentinel_disagreed && since.elapsed() >= DISAGREE_GRACE {
                let named = sentinel.map(|i| &*self.backends[i].name);
                tracing::warn!(sentinel_master = ?named, chosen = ?out.chosen.map(|i| &*self.backends[i].name), "the sentinels name a master that the INFO checks do not confirm; keeping the INFO choice");
                metrics::counter!(m::SENTINEL_DISAGREEMENTS).increment(1);
                self.sentinel_disagreed = true;
            }
        } else {
            self.disagree_since = None;
            self.sentinel_disagreed = false;
        }
        // A *new* master is published only on a report younger than STALE_AFTER. Between
        // slow rounds a backend can be demoted unseen (Sentinel turns an old master into a
        // replica seconds after a switchover); if the current master then dies, its last
        // report would still say `role:master`. The route is withdrawn instead and a round
        // runs at once, so the choice is made on fresh reports a moment later.
        let stale = out.chosen.filter(|&i| {
            Some(i) != current
                && self.backends[i]
                    .checked_at
                    .is_none_or(|t| t.elapsed() > STALE_AFTER)
        });
        if let Some(i) = stale {
            tracing::debug!(backend = %self.backends[i].name, "candidate's report is not fresh; checking again before routing to it");
            self.recheck = true;
        }
        let target = out.chosen.filter(|_| stale.is_none()).and_then(|i| {
            let b = &self.backends[i];
            b.addr.map(|a| (b.name.clone(), a))
        });
        // Sessions on the old master deliver in-flight replies only while it still answers as
        // a master; otherwise nothing useful can come back and they close at once.
        let mode = match current.map(|i| &self.backends[i]) {
            Some(old)
                if old.health.is_up()
                    && old.addr != held
                    && old.info.as_ref().is_some_and(|i| i.role == Role::Master) =>
            {
                DrainMode::Graceful
            }
            _ => DrainMode::Immediate,
        };
        let Some(new) = self.table.publish(target, mode) else {
            return false;
        };
        self.since = Some(SystemTime::now());
        metrics::counter!(m::MASTER_CHANGES).increment(1);
        metrics::gauge!(m::ROUTE_EPOCH).set(self.table.epoch() as f64);
        metrics::gauge!(m::HAS_MASTER).set(if new.is_some() { 1.0 } else { 0.0 });
        for b in &self.backends {
            let is = new.as_ref().is_some_and(|r| r.backend == b.name);
            metrics::gauge!(m::MASTER_INFO, "backend" => b.name.to_string()).set(if is {
                1.0
            } else {
                0.0
            });
        }
        match &new {
            Some(r) => tracing::warn!(
                master = %r.backend,
                addr = %r.addr,
                epoch = r.epoch,
                previous = ?current.map(|i| &*self.backends[i].name),
                drain = ?mode,
                "master route published"
            ),
            None if self.hold.is_some() => tracing::warn!(
                previous = ?current.map(|i| &*self.backends[i].name),
                epoch = self.table.epoch(),
                "route withdrawn while the failover completes; new clients wait for the new master"
            ),
            None => tracing::error!(
                previous = ?current.map(|i| &*self.backends[i].name),
                epoch = self.table.epoch(),
                "no backend qualifies as master: route withdrawn, new clients wait"
            ),
        }
        true
    }

    fn publish_status(&self) {
        let route = self.table.load();
        let master_offset = route
            .as_ref()
            .and_then(|r| self.backends.iter().find(|b| b.name == r.backend))
            .and_then(|b| b.info.as_ref())
            .map(|i| (i.master_repl_offset, i.master_replid.clone()));
        let backends = self
            .backends
            .iter()
            .map(|b| {
                let lag = match (&b.info, &master_offset) {
                    (Some(i), Some((off, replid)))
                        if i.role == Role::Replica && &i.master_replid == replid =>
                    {
                        Some(off.saturating_sub(i.master_repl_offset))
                    }
                    _ => None,
                };
                BackendStatus {
                    backend: b.name.to_string(),
                    address: b.addr.map(|a| a.to_string()),
                    up: b.health.is_up(),
                    error: b.last_error.as_ref().map(|e| e.to_string()),
                    role: b.info.as_ref().map(|i| i.role),
                    repl_offset: b.info.as_ref().map(|i| i.master_repl_offset),
                    lag_bytes: lag,
                    master_link_up: b.info.as_ref().and_then(|i| i.master_link_up),
                    connected_replicas: b.info.as_ref().map(|i| i.connected_slaves),
                    last_check_ms: b.last_latency.map(|d| d.as_secs_f64() * 1000.0),
                }
            })
            .collect();
        let master = route.map(|r| MasterStatus {
            backend: r.backend.to_string(),
            address: r.addr.to_string(),
            epoch: r.epoch,
            since_unix: self
                .since
                .and_then(|s| s.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        self.status.store(Arc::new(Status {
            backends,
            master,
            rounds: self.rounds,
            split_brain: !self.last_conflict.is_empty(),
            sentinel: self.cfg.sentinel.as_ref().map(|_| SentinelStatus {
                disagrees: self.sentinel_disagreed,
                hold: self
                    .hold
                    .as_ref()
                    .map(|h| format!("{} (since {})", h.addr, h.event)),
                ..self.sentinel_view.clone()
            }),
        }));
    }
}
