//! Every metric the proxy exports, named in one place.
//!
//! Names follow Prometheus conventions (`_total` for counters, `_seconds` for durations) and
//! carry only bounded labels: `backend` (one of the configured backends), `role`, `reason`,
//! `direction`, `sentinel`. A client address is never a label.

/// Gauge, 1 when the backend passes its health checks (after rise/fall hysteresis), else 0.
/// Labels: `backend`.
pub const BACKEND_UP: &str = "redis_master_proxy_backend_up";
/// Gauge, 1 for the role the backend last reported (`master`, `replica`), 0 for the other.
/// Labels: `backend`, `role`.
pub const BACKEND_ROLE: &str = "redis_master_proxy_backend_role";
/// Gauge, the backend's `master_repl_offset` from its last successful check. Labels: `backend`.
pub const BACKEND_REPL_OFFSET: &str = "redis_master_proxy_backend_repl_offset";
/// Info gauge: 1 for the backend that is the current route, 0 for the others.
/// Labels: `backend`.
pub const MASTER_INFO: &str = "redis_master_proxy_master_info";
/// Gauge, 1 while a master is known (the proxy is ready), else 0.
pub const HAS_MASTER: &str = "redis_master_proxy_has_master";
/// Gauge, the epoch of the current route (increments on every publish).
pub const ROUTE_EPOCH: &str = "redis_master_proxy_route_epoch";
/// Counter, route changes (a new master, or the route withdrawn).
pub const MASTER_CHANGES: &str = "redis_master_proxy_master_changes_total";
/// Counter, split brains seen: each change of the set of candidate masters while it has more
/// than one (control rule 11).
pub const SPLIT_BRAIN: &str = "redis_master_proxy_split_brain_conflicts_total";
/// Gauge, 1 while more than one candidate master stands (a split brain), else 0. The
/// `RedisMasterProxySplitBrain` alert watches it.
pub const SPLIT_BRAIN_NOW: &str = "redis_master_proxy_split_brain";
/// Gauge, 1 while the route is paused (its master is suspect or held: control rule 10).
pub const ROUTE_PAUSED: &str = "redis_master_proxy_route_paused";
/// Counter, route pauses (a suspect or held master). Labels: `reason` = `suspect` | `hold`.
pub const ROUTE_PAUSES: &str = "redis_master_proxy_route_pauses_total";
/// Gauge, 1 while the backend's checks are slow (suspect, control rule 2). Labels: `backend`.
pub const BACKEND_SUSPECT: &str = "redis_master_proxy_backend_suspect";
/// Counter, promotions seen in INFO and not followed (control rule 4).
pub const UNCORROBORATED: &str = "redis_master_proxy_uncorroborated_promotions_total";
/// Counter, failover holds that expired without a promotion (control rule 8).
/// Labels: `sentinel`.
pub const SENTINEL_CONTRADICTED: &str = "redis_master_proxy_sentinel_contradicted_total";
/// Counter, failover events ignored from a distrusted sentinel (control rule 8).
/// Labels: `sentinel`.
pub const SENTINEL_IGNORED: &str = "redis_master_proxy_sentinel_events_ignored_total";
/// Gauge, client connections open now.
pub const CLIENT_ACTIVE: &str = "redis_master_proxy_client_connections_active";
/// Counter, client connections accepted.
pub const CLIENT_TOTAL: &str = "redis_master_proxy_client_connections_total";
/// Gauge, the configured `max_connections`, so alerts can compare against it.
pub const CLIENT_MAX: &str = "redis_master_proxy_client_connections_max";
/// Counter, sessions closed because their route was replaced or withdrawn.
pub const DRAINED: &str = "redis_master_proxy_connections_drained_total";
/// Counter, client connections closed without being relayed.
/// Labels: `reason` = `no_master` | `over_limit` | `backend_connect` | `master_suspect`.
pub const REFUSED: &str = "redis_master_proxy_connections_refused_total";
/// Counter, accept(2) errors (EMFILE and friends); the loop backs off and keeps going.
pub const ACCEPT_ERRORS: &str = "redis_master_proxy_accept_errors_total";
/// Counter, bytes relayed. Labels: `direction` = `client_to_backend` | `backend_to_client`.
pub const RELAY_BYTES: &str = "redis_master_proxy_relay_bytes_total";
/// Histogram, duration of one health check (resolve, connect, AUTH, INFO). Labels: `backend`.
pub const CHECK_DURATION: &str = "redis_master_proxy_check_duration_seconds";
/// Counter, failed health checks. Labels: `backend`, `reason` (see `redis::client::CheckError::reason`).
pub const CHECK_FAILURES: &str = "redis_master_proxy_check_failures_total";
/// Gauge, 1 while the sentinel answers. Labels: `sentinel`.
pub const SENTINEL_UP: &str = "redis_master_proxy_sentinel_up";
/// Gauge, 1 while a configured sentinel address does not answer as a sentinel that monitors
/// `sentinel.master_name` (a Redis data port, a wrong master name). Labels: `sentinel`.
pub const SENTINEL_MISCONFIGURED: &str = "redis_master_proxy_sentinel_misconfigured";
/// Counter, rounds where the sentinels' master differs from the INFO-based choice.
pub const SENTINEL_DISAGREEMENTS: &str = "redis_master_proxy_sentinel_disagreements_total";
/// Counter, failover events received from sentinels. Labels: `event`.
pub const SENTINEL_EVENTS: &str = "redis_master_proxy_sentinel_events_total";
/// Counter, commands written to shared backend connections in `mode = "multiplex"`.
pub const MUX_COMMANDS: &str = "redis_master_proxy_multiplex_commands_total";
/// Counter, of those, commands written to shared connections that speak RESP3 (the clients
/// that sent `HELLO 3`). A series of its own rather than a label, so `MUX_COMMANDS` keeps its
/// one series for the dashboards and scripts that read it.
pub const MUX_RESP3_COMMANDS: &str = "redis_master_proxy_multiplex_resp3_commands_total";
/// Gauge, master connections `mode = "multiplex"` holds open for no one client now: the shared
/// ones (at most 2 per data-path thread) and each thread's spare for its next pinned client.
/// They stay open while idle, so the master's count of clients includes them.
pub const MUX_POOLED: &str = "redis_master_proxy_multiplex_pooled_connections";
/// Counter, multiplexed clients pinned to a backend connection of their own.
pub const MUX_PINNED: &str = "redis_master_proxy_multiplex_pinned_total";
/// Counter, multiplexed commands answered with the proxy's error instead of Redis's reply.
/// Labels: `reason` = `lost` (the shared connection closed or its route drained at once while
/// the command was in flight: it may have run) | `no_master` (no master within
/// `wait_for_master`: it did not run).
pub const MUX_ERRORS: &str = "redis_master_proxy_multiplex_errors_total";
/// Counter, configuration reloads. Labels: `result` = `ok` | `error`.
pub const CONFIG_RELOADS: &str = "redis_master_proxy_config_reloads_total";

/// Buckets of the check-duration histogram: a loopback check takes ~0.2 ms, a cross-node one
/// a few ms; the top buckets show checks running into their timeout.
const CHECK_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide Prometheus recorder once and returns the handle `/metrics` renders.
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The bucket list is a non-empty constant, so this cannot fail; the fallback keeps
            // the default summary rather than panicking.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(CHECK_DURATION.into()), CHECK_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays unused and
            // `/metrics` renders empty rather than the process failing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
