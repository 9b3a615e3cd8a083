//! The snapshot `/status` and the `status` command show. Secrets never enter it.

use crate::redis::info::Role;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub backends: Vec<BackendStatus>,
    pub master: Option<MasterStatus>,
    /// Completed check rounds.
    pub rounds: u64,
    /// Whether more than one candidate master stands now (rule 11).
    pub split_brain: bool,
    /// The sentinels' view, when configured.
    pub sentinel: Option<SentinelStatus>,
    /// What the decision rules are holding against whom (see `control`'s rules).
    pub decisions: Decisions,
}

/// Exclusions and conflicts the rules keep now; each says what will end it in README.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Decisions {
    /// Rule 11: the candidate masters of a standing split brain.
    pub split_brain_masters: Vec<String>,
    /// Rule 4: promotions seen in INFO and not followed.
    pub uncorroborated_promotions: Vec<String>,
    /// Rule 5: histories left by an accepted promotion; masters still serving them are excluded.
    pub superseded_histories: Vec<String>,
    /// Rule 13: a master that answers as a replica, whose sessions stay while new clients wait.
    pub kept_sessions: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SentinelStatus {
    /// The master a majority of the configured sentinels name (`host:port` as they name it).
    pub master: Option<String>,
    /// The configured backend it maps to.
    pub backend: Option<String>,
    pub reachable: usize,
    pub configured: usize,
    /// The majority names a master that the checks do not confirm (for longer than 5 s).
    pub disagrees: bool,
    /// Masters held by a failover event (rule 6), with the event and the time left.
    pub hold: Option<String>,
    /// Sentinels whose failover events are ignored for now (rule 8).
    pub distrusted: Vec<String>,
    /// Holds that expired without a promotion, per configured sentinel (rule 8).
    pub contradicted: Vec<u32>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendStatus {
    pub backend: String,
    pub address: Option<String>,
    pub up: bool,
    /// Checks are slow: not down, not a candidate either (rule 2).
    pub suspect: bool,
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
    /// Sessions hold their bytes: the master is suspect or held (rule 10).
    pub paused: bool,
}
