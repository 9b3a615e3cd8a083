//! The control plane's I/O shell: it runs the checks and the sentinel queries, turns what they
//! return (and sentinel events, reloads, time) into [`Input`]s for the [`Machine`], and applies
//! the [`Effect`]s that come back: publish, withdraw, pause or resume the route, check again
//! now, log and count. No decision is made here.
//!
//! Checks are not waited for as a batch: each result is handed to the machine the moment it
//! arrives, and a backend whose check is still running (a hung server, held to the timeout) is
//! skipped by the next round. When something changes (a sentinel event, a new state), a round
//! starts at once, and a backend whose check was already running is checked again as soon as
//! that check ends, since its answer may predate the change. Rounds run every `health.interval`, and every [`FAST_INTERVAL`]
//! while the machine says something is changing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::machine::{Answer, Effect, HoldEnd, Input, Machine, Named, Note, Outcome, Params};
use crate::config::{Config, HostPort};
use crate::control::health;
use crate::control::sentinel;
use crate::metrics as m;
use crate::redis::client::{self, CheckError};
use crate::redis::info::Role;
use crate::redis::resp::{ErrorCode, ReplyError};
use crate::routing::RouteTable;
use crate::status::{BackendStatus, Decisions, MasterStatus, SentinelStatus, Status};

/// Interval of rounds while something is changing.
pub const FAST_INTERVAL: Duration = Duration::from_millis(50);

/// The machine's clock: tokio's, so a test runtime with paused time drives the rules' timers
/// (holds, freshness, suspicion) the same way it drives the shell's own sleeps.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// A finished piece of control-plane I/O.
enum Done {
    Check(HostPort, health::Report),
    Sentinels(Vec<Answer<HostPort>>),
}

/// The control loop.
pub struct Control {
    cfg: Arc<Config>,
    machine: Machine,
    table: Arc<RouteTable>,
    status: Arc<ArcSwap<Status>>,
    /// Backend names as configured, in configuration order (the machine's indices).
    names: Vec<Arc<str>>,
    /// The address each backend last resolved to, to map sentinel answers and events.
    addrs: Vec<Option<SocketAddr>>,
    rounds: u64,
    /// When the route last changed.
    since: Option<SystemTime>,
}

fn params(cfg: &Config) -> Params {
    Params {
        rise: cfg.health.rise,
        fall: cfg.health.fall,
        down_after: cfg.health.down_after.0,
        sentinels: cfg.sentinel.as_ref().map_or(0, |s| s.addresses.len()),
    }
}

fn names(cfg: &Config) -> Vec<Arc<str>> {
    cfg.backends
        .iter()
        .map(|b| Arc::from(b.to_string()))
        .collect()
}

/// Rule 1: what a check's result is evidence of.
pub fn classify(result: Result<crate::redis::info::ReplicationInfo, CheckError>) -> Outcome {
    let err = match result {
        Ok(info) => return Outcome::Reply(info),
        Err(e) => e,
    };
    let (reason, error) = (err.reason(), err.to_string());
    match &err {
        CheckError::Local(_) => Outcome::Local { error },
        CheckError::Timeout { .. } => Outcome::Slow { reason, error },
        CheckError::Reply(ReplyError::Redis(e)) | CheckError::Auth(e)
            if e.code == ErrorCode::Busy =>
        {
            Outcome::Busy { error }
        }
        CheckError::Refused(_) | CheckError::Reset => Outcome::Dead { reason, error },
        _ => Outcome::Failed { reason, error },
    }
}

impl Control {
    pub fn new(cfg: Arc<Config>, table: Arc<RouteTable>, status: Arc<ArcSwap<Status>>) -> Control {
        let names = names(&cfg);
        metrics::gauge!(m::CLIENT_MAX).set(cfg.max_connections as f64);
        Control {
            machine: Machine::new(names.clone(), params(&cfg)),
            addrs: vec![None; names.len()],
            names,
            cfg,
            table,
            status,
            rounds: 0,
            since: None,
        }
    }

    /// Takes a new configuration: backends that stay keep their state (so a reload does not
    /// reset hysteresis or move the route); new ones start unknown; removed ones are dropped.
    fn reconfigure(&mut self, cfg: Arc<Config>) {
        let new_names = names(&cfg);
        for gone in self.names.iter().filter(|n| !new_names.contains(n)) {
            tracing::info!(backend = %gone, "backend removed from the configuration");
            for name in [m::BACKEND_UP, m::MASTER_INFO, m::BACKEND_SUSPECT] {
                metrics::gauge!(name, "backend" => gone.to_string()).set(0.0);
            }
        }
        self.addrs = new_names
            .iter()
            .map(|n| {
                self.names
                    .iter()
                    .position(|o| o == n)
                    .and_then(|i| self.addrs[i])
            })
            .collect();
        let input = Input::Reconfigure {
            backends: new_names.clone(),
            params: params(&cfg),
            sentinels_changed: cfg.sentinel != self.cfg.sentinel,
        };
        self.names = new_names;
        metrics::gauge!(m::CLIENT_MAX).set(cfg.max_connections as f64);
        self.cfg = cfg;
        self.step(input);
    }

    /// Runs until `shutdown`.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reloads: mpsc::Receiver<Arc<Config>>,
        mut events: mpsc::Receiver<sentinel::Resolved>,
    ) {
        let (tx, mut done) = mpsc::unbounded_channel::<Done>();
        let mut in_flight: HashSet<HostPort> = HashSet::new();
        // Backends whose running check started before something changed: checked again the
        // moment it ends, so a promotion is not seen one fast round late.
        let mut again: HashSet<HostPort> = HashSet::new();
        let mut urgent = false;
        let mut sentinels_in_flight = false;
        let mut next = Instant::now();
        loop {
            let deadline = self
                .machine
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or(next)
                .min(next);
            let recheck = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= next {
                        if std::mem::take(&mut urgent) {
                            again.extend(in_flight.iter().cloned());
                        }
                        self.launch(&tx, &mut in_flight, &mut sentinels_in_flight);
                        self.rounds += 1;
                        next = Instant::now() + self.interval();
                    }
                    self.step(Input::Tick)
                }
                Some(d) = done.recv() => match d {
                    Done::Check(hp, report) => {
                        in_flight.remove(&hp);
                        if again.remove(&hp) {
                            in_flight.insert(hp.clone());
                            self.spawn_check(hp.clone(), &tx);
                        }
                        self.on_check(hp, report)
                    }
                    Done::Sentinels(answers) => {
                        sentinels_in_flight = false;
                        let input = self.map_answers(answers).await;
                        self.step(input)
                    }
                },
                Some(cfg) = reloads.recv() => {
                    self.reconfigure(cfg);
                    true
                }
                Some(ev) = events.recv() => {
                    let mut recheck = self.on_event(ev);
                    // Take whatever else arrived in the same burst, then check at once.
                    while let Ok(ev) = events.try_recv() {
                        recheck |= self.on_event(ev);
                    }
                    recheck
                }
            };
            let everything_running = self.cfg.backends.iter().all(|b| in_flight.contains(b))
                && (self.cfg.sentinel.is_none() || sentinels_in_flight);
            if recheck && everything_running {
                // A round now would start nothing, and the machine, asked again at once, would
                // ask again: the loop would spin until a check ends. Each running check is
                // repeated the moment it ends instead (its answer may predate the change).
                again.extend(in_flight.iter().cloned());
            } else if recheck {
                next = Instant::now();
                urgent = true;
            } else if self.machine.wants_fast_checks(now()) {
                next = next.min(Instant::now() + FAST_INTERVAL);
            }
            self.publish_status();
        }
    }

    /// The interval to the next round: fast while something is changing.
    fn interval(&self) -> Duration {
        if self.machine.wants_fast_checks(now()) {
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
        for hp in &self.cfg.backends {
            if !in_flight.insert(hp.clone()) {
                continue; // still checking (a hung backend holds its check to the timeout)
            }
            self.spawn_check(hp.clone(), tx);
        }
        if self.cfg.sentinel.is_some() && !*sentinels_in_flight {
            *sentinels_in_flight = true;
            let (fut, tx) = (self.query_sentinels(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(Done::Sentinels(fut.await));
            });
        }
    }

    /// Starts one check of `hp`; its report comes back as [`Done::Check`].
    fn spawn_check(&self, hp: HostPort, tx: &mpsc::UnboundedSender<Done>) {
        let (auth, tx, timeout) = (self.cfg.auth.clone(), tx.clone(), self.cfg.health.timeout.0);
        tokio::spawn(async move {
            let report = health::check(&hp, auth.as_ref(), timeout).await;
            let _ = tx.send(Done::Check(hp, report));
        });
    }

    /// Feeds one input to the machine and applies its effects; returns whether a round should
    /// start at once.
    fn step(&mut self, input: Input) -> bool {
        let effects = self.machine.handle(input, now());
        let mut recheck = false;
        for e in effects {
            recheck |= self.apply(e);
        }
        recheck
    }

    fn on_check(&mut self, hp: HostPort, report: health::Report) -> bool {
        let Some(i) = self.cfg.backends.iter().position(|b| *b == hp) else {
            return false; // removed by a reload while it ran
        };
        let label = self.names[i].to_string();
        metrics::histogram!(m::CHECK_DURATION, "backend" => label.clone())
            .record(report.latency.as_secs_f64());
        if report.addr.is_some() {
            self.addrs[i] = report.addr;
        }
        let outcome = classify(report.result);
        match &outcome {
            Outcome::Reply(info) => {
                for role in [Role::Master, Role::Replica] {
                    let v = if info.role == role { 1.0 } else { 0.0 };
                    metrics::gauge!(m::BACKEND_ROLE, "backend" => label.clone(), "role" => role.as_str())
                        .set(v);
                }
                metrics::gauge!(m::BACKEND_REPL_OFFSET, "backend" => label.clone())
                    .set(info.master_repl_offset as f64);
            }
            other => {
                let reason = other.reason().unwrap_or("unknown");
                metrics::counter!(m::CHECK_FAILURES, "backend" => label.clone(), "reason" => reason)
                    .increment(1);
            }
        }
        let recheck = self.step(Input::Check {
            backend: i,
            addr: report.addr,
            outcome,
            latency: report.latency,
        });
        let up = self.machine.is_up(i);
        metrics::gauge!(m::BACKEND_UP, "backend" => label.clone()).set(if up { 1.0 } else { 0.0 });
        let suspect = self.machine.is_suspect(i);
        metrics::gauge!(m::BACKEND_SUSPECT, "backend" => label).set(if suspect {
            1.0
        } else {
            0.0
        });
        recheck
    }

    /// Which configured backend `hp` (as a sentinel names it) or `addr` is.
    fn backend_of(&self, hp: Option<&HostPort>, addr: Option<SocketAddr>) -> Option<usize> {
        self.cfg
            .backends
            .iter()
            .position(|b| Some(b) == hp)
            .or_else(|| addr.and_then(|a| self.addrs.iter().position(|x| *x == Some(a))))
    }

    /// Maps each sentinel's answer to a configured backend (by name, or by resolved address, so
    /// IPs that sentinels announce match host names in the config).
    async fn map_answers(&self, answers: Vec<Answer<HostPort>>) -> Input {
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(match a {
                Answer::Names(hp) => {
                    let addr = client::resolve(&hp).await.ok();
                    Answer::Names(Named {
                        backend: self.backend_of(Some(&hp), addr),
                        label: hp.to_string(),
                    })
                }
                Answer::NoMaster => Answer::NoMaster,
                Answer::Unreachable => Answer::Unreachable,
            });
        }
        Input::SentinelAnswers(out)
    }

    fn on_event(&mut self, ev: sentinel::Resolved) -> bool {
        let Some(sc) = &self.cfg.sentinel else {
            return false;
        };
        let Some(sentinel) = sc
            .addresses
            .iter()
            .position(|a| a.to_string() == ev.sentinel)
        else {
            return false;
        };
        let input = Input::SentinelEvent {
            sentinel,
            channel: ev.event.channel,
            kind: ev.event.kind.clone(),
            master: self.backend_of(ev.event.old_master.as_ref(), ev.old_master),
            subject: self.backend_of(ev.event.subject.as_ref(), ev.subject),
        };
        self.step(input)
    }

    /// Asks every configured sentinel for the master, concurrently with the checks.
    fn query_sentinels(
        &self,
    ) -> impl std::future::Future<Output = Vec<Answer<HostPort>>> + 'static {
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
            let mut answers = vec![Answer::Unreachable; sc.addresses.len()];
            while let Some(Ok((i, addr, r))) = set.join_next().await {
                let label = addr.to_string();
                match r {
                    Ok(Some(hp)) => answers[i] = Answer::Names(hp),
                    Ok(None) => answers[i] = Answer::NoMaster,
                    Err(e) => {
                        tracing::debug!(sentinel = %label, error = %e, "sentinel query failed");
                        metrics::gauge!(m::SENTINEL_UP, "sentinel" => label).set(0.0);
                    }
                }
            }
            answers
        }
    }

    fn sentinel_label(&self, i: usize) -> String {
        self.cfg
            .sentinel
            .as_ref()
            .and_then(|s| s.addresses.get(i))
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("#{i}"))
    }

    /// Applies one effect; returns whether a round should start at once.
    fn apply(&mut self, effect: Effect) -> bool {
        let previous = self.table.load().map(|r| r.backend.clone());
        match effect {
            Effect::CheckNow => return true,
            Effect::Note(n) => self.log(n),
            Effect::Pause { reason } => {
                self.table.set_paused(true);
                metrics::gauge!(m::ROUTE_PAUSED).set(1.0);
                metrics::counter!(m::ROUTE_PAUSES, "reason" => reason.as_str()).increment(1);
                tracing::warn!(master = ?previous, reason = reason.as_str(), "route paused: sessions hold their bytes, new clients wait");
            }
            Effect::Resume => {
                self.table.set_paused(false);
                metrics::gauge!(m::ROUTE_PAUSED).set(0.0);
                tracing::info!(master = ?previous, "route resumed: the master answered as before");
            }
            Effect::Publish {
                backend,
                addr,
                drain,
            } => {
                self.table.publish(Some((backend.clone(), addr)), drain);
                self.route_changed();
                tracing::warn!(master = %backend, %addr, epoch = self.table.epoch(), ?previous, ?drain, "master route published");
            }
            Effect::Withdraw { drain } => {
                if self.table.publish(None, drain) && previous.is_some() {
                    self.route_changed();
                    tracing::error!(
                        ?previous,
                        epoch = self.table.epoch(),
                        ?drain,
                        "no backend qualifies as master: route withdrawn, new clients wait"
                    );
                }
            }
        }
        false
    }

    fn route_changed(&mut self) {
        self.since = Some(SystemTime::now());
        metrics::counter!(m::MASTER_CHANGES).increment(1);
        metrics::gauge!(m::ROUTE_EPOCH).set(self.table.epoch() as f64);
        metrics::gauge!(m::ROUTE_PAUSED).set(0.0);
        let route = self.table.load();
        metrics::gauge!(m::HAS_MASTER).set(if route.is_some() { 1.0 } else { 0.0 });
        for name in &self.names {
            let is = route.as_ref().is_some_and(|r| r.backend == *name);
            metrics::gauge!(m::MASTER_INFO, "backend" => name.to_string()).set(if is {
                1.0
            } else {
                0.0
            });
        }
    }

    /// Logs and counts one transition.
    fn log(&self, n: Note) {
        match n {
            Note::BackendUp { backend, role } => {
                tracing::info!(%backend, role = role.as_str(), "backend up")
            }
            Note::BackendDown {
                backend,
                reason,
                error,
            } => tracing::warn!(%backend, reason, %error, "backend down"),
            Note::RoleChanged {
                backend,
                role,
                was,
                replid,
            } => {
                tracing::info!(%backend, role = role.as_str(), was = was.as_str(), %replid, "backend replication state changed")
            }
            Note::Suspect { backend, reason } => {
                tracing::warn!(%backend, reason, "backend suspect: its check is slow; not down, not a candidate")
            }
            Note::SuspectCleared { backend } => {
                tracing::info!(%backend, "backend answers again")
            }
            Note::SuspectTooLong { backend } => tracing::warn!(
                %backend,
                down_after = ?self.cfg.health.down_after.0,
                "backend suspect for health.down_after: now down"
            ),
            Note::HoldStarted {
                master,
                sentinel,
                channel,
            } => tracing::warn!(
                %master,
                sentinel = %self.sentinel_label(sentinel),
                event = channel,
                "failover under way: the master is held (no candidate; its route, if any, paused) until a promotion is seen, for at most 2 s"
            ),
            Note::HoldEnded { master, why } => match why {
                HoldEnd::Expired => {
                    tracing::warn!(%master, "failover hold expired without a promotion: the master is routed to again")
                }
                why => tracing::info!(%master, ?why, "failover hold ended"),
            },
            Note::SentinelContradicted { sentinel, master } => {
                let label = self.sentinel_label(sentinel);
                metrics::counter!(m::SENTINEL_CONTRADICTED, "sentinel" => label.clone())
                    .increment(1);
                tracing::warn!(sentinel = %label, %master, "sentinel announced a failover that did not happen: its failover events about this master are ignored for 60 s");
            }
            Note::EventIgnored { sentinel, channel } => {
                let label = self.sentinel_label(sentinel);
                metrics::counter!(m::SENTINEL_IGNORED, "sentinel" => label.clone()).increment(1);
                tracing::info!(sentinel = %label, event = channel, "failover event from a distrusted sentinel ignored");
            }
            Note::PromotionAccepted { promoted, from, by } => tracing::warn!(
                %promoted,
                %from,
                by,
                "promotion out of the master's history accepted: masters still serving the old history are excluded"
            ),
            Note::Uncorroborated { promotions } => {
                if promotions.is_empty() {
                    tracing::info!("no uncorroborated promotion left");
                } else {
                    metrics::counter!(m::UNCORROBORATED).increment(1);
                    let list: Vec<String> = promotions
                        .iter()
                        .map(|(p, m)| format!("{p} out of {m}"))
                        .collect();
                    tracing::error!(promotions = ?list, "a node was promoted out of the master's history without corroboration (no failover event names it, the sentinels do not name it, or its old master still has its replicas): not followed");
                }
            }
            Note::HistoryTrustedAgain { history, why } => {
                tracing::info!(%history, why, "superseded history trusted again")
            }
            Note::SplitBrain { masters, chosen } => {
                if masters.is_empty() {
                    metrics::gauge!(m::SPLIT_BRAIN_NOW).set(0.0);
                    tracing::warn!("split brain over: one candidate master left");
                } else {
                    metrics::gauge!(m::SPLIT_BRAIN_NOW).set(1.0);
                    metrics::counter!(m::SPLIT_BRAIN).increment(1);
                    tracing::error!(?masters, ?chosen, "split brain: more than one backend reports role:master with unrelated histories; routing to one only, chosen from the evidence alone");
                }
            }
            Note::SentinelDisagrees { named, chosen } => {
                metrics::counter!(m::SENTINEL_DISAGREEMENTS).increment(1);
                tracing::warn!(sentinel_master = %named, ?chosen, "the sentinels name a master that the checks do not confirm; keeping the checks' choice");
            }
            Note::StaleCandidate { backend } => {
                tracing::debug!(%backend, "candidate's report is not fresh; checking again before routing to it")
            }
            Note::SessionsKept { backend } => {
                tracing::warn!(%backend, "the master answers as a replica and no other master qualifies: new clients wait, its sessions stay with it (writes get READONLY from Redis)")
            }
            Note::KeptSessionsClosed { backend, why } => {
                tracing::warn!(%backend, why, "sessions kept on the demoted master closed")
            }
        }
    }

    fn publish_status(&self) {
        let view = self.machine.view(now());
        let route = self.table.load();
        let master_offset = route
            .as_ref()
            .and_then(|r| view.backends.iter().find(|b| *b.name == *r.backend))
            .and_then(|b| b.info.as_ref())
            .map(|i| (i.master_repl_offset, i.master_replid.clone()));
        let backends = view
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
                    backend: b.name.clone(),
                    address: b.addr.map(|a| a.to_string()),
                    up: b.up,
                    suspect: b.suspect,
                    error: b.error.clone(),
                    role: b.info.as_ref().map(|i| i.role),
                    repl_offset: b.info.as_ref().map(|i| i.master_repl_offset),
                    lag_bytes: lag,
                    master_link_up: b.info.as_ref().and_then(|i| i.master_link_up),
                    connected_replicas: b.info.as_ref().map(|i| i.connected_slaves),
                    last_check_ms: b.latency.map(|d| d.as_secs_f64() * 1000.0),
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
            paused: r.is_paused(),
        });
        let sentinel = self.cfg.sentinel.as_ref().map(|sc| SentinelStatus {
            master: view.sentinel_master.clone(),
            backend: view.sentinel_backend.clone(),
            reachable: view.sentinels_answering,
            configured: sc.addresses.len(),
            disagrees: view.sentinel_disagrees,
            hold: (!view.holds.is_empty()).then(|| {
                let holds: Vec<String> = view
                    .holds
                    .iter()
                    .map(|h| {
                        format!(
                            "{} (since {} from {}, {:.1} s left)",
                            h.master,
                            h.channel,
                            self.sentinel_label(h.sentinel),
                            h.left.as_secs_f64()
                        )
                    })
                    .collect();
                holds.join(", ")
            }),
            distrusted: view
                .distrusted
                .iter()
                .map(|d| {
                    format!(
                        "{} about {} ({:.0} s left)",
                        self.sentinel_label(d.sentinel),
                        d.master,
                        d.left.as_secs_f64()
                    )
                })
                .collect(),
            contradicted: view.contradicted.clone(),
        });
        self.status.store(Arc::new(Status {
            backends,
            master,
            rounds: self.rounds,
            split_brain: !view.split_brain.is_empty(),
            sentinel,
            decisions: Decisions {
                split_brain_masters: view.split_brain,
                uncorroborated_promotions: view.uncorroborated,
                superseded_histories: view.superseded,
                kept_sessions: view.kept,
            },
        }));
    }
}
