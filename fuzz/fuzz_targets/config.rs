//! Fuzzes the configuration parser (`Config::parse`) with arbitrary text.
//!
//! Checked on every input, beyond "does not panic":
//! - a config that parses is one the proxy can run with: at least one backend and no duplicate,
//!   `health.timeout` shorter than `health.interval` (so checks never overlap), rise, fall and
//!   `max_connections` at least 1, and a `[sentinel]` section only with addresses and a name;
//! - an error names the file it was read from, so an operator knows what to fix;
//! - what `redis-master-proxy check` prints for a parsed config (without secrets, and with whole
//!   milliseconds, which is the precision it prints) is itself a config that parses to the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_master_proxy::config::{Config, Overrides};

/// A name no input contains by chance, so the "error names the file" check means something.
const FILE: &str = "fuzzed-config.toml";

fuzz_target!(|data: &[u8]| {
    // The shipped example reads its password from this variable; with it set, that seed and
    // its mutations reach the checks of a parsed config with `[auth]`.
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| std::env::set_var("REDIS_PASSWORD", "fuzz-password"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if reads_special_files(text) {
        return;
    }
    match Config::parse(text, FILE, &Overrides::default()) {
        Ok(cfg) => {
            check_valid(&cfg);
            check_round_trip(&cfg);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(FILE), "error does not name the file: {msg}");
        }
    }
});

/// `password_file` is read while parsing. Inputs that could name a device or a kernel file
/// (`/dev/zero` never ends, `/dev/stdin` blocks) or hide a path behind TOML escapes are skipped:
/// they test the machine, not the parser.
fn reads_special_files(text: &str) -> bool {
    ["dev/", "proc/", "sys/", "fd/", "\\u", "\\U"]
        .iter()
        .any(|s| text.contains(s))
}

fn check_valid(cfg: &Config) {
    assert!(!cfg.backends.is_empty(), "parsed without backends");
    let mut seen = std::collections::HashSet::new();
    for b in &cfg.backends {
        assert!(seen.insert(b), "backend {b} listed twice");
        assert!(b.port != 0 && !b.host.is_empty(), "backend {b:?}");
    }
    let h = &cfg.health;
    assert!(
        h.timeout.0 < h.interval.0,
        "health.timeout {:?} is not shorter than health.interval {:?}",
        h.timeout.0,
        h.interval.0
    );
    assert!(!h.timeout.0.is_zero(), "zero health.timeout");
    assert!(
        h.rise >= 1 && h.fall >= 1,
        "rise {} fall {}",
        h.rise,
        h.fall
    );
    assert!(cfg.max_connections >= 1);
    if let Some(s) = &cfg.sentinel {
        assert!(!s.addresses.is_empty(), "[sentinel] without addresses");
        assert!(!s.master_name.is_empty(), "[sentinel] without master_name");
    }
    if let Some(a) = &cfg.auth {
        assert!(!a.password.expose().is_empty(), "empty password accepted");
    }
}

fn check_round_trip(cfg: &Config) {
    let has_secret = cfg.auth.is_some() || cfg.sentinel.as_ref().is_some_and(|s| s.auth.is_some());
    let mut durations = vec![
        cfg.connect_timeout,
        cfg.drain_timeout,
        cfg.wait_for_master,
        cfg.shutdown_grace,
        cfg.health.interval,
        cfg.health.timeout,
    ];
    if let Some(s) = &cfg.sentinel {
        durations.extend([s.check_interval, s.check_timeout]);
    }
    if has_secret
        || durations
            .iter()
            .any(|d| d.0.subsec_nanos() % 1_000_000 != 0)
    {
        return;
    }
    let shown = cfg.to_toml();
    let again = Config::parse(&shown, FILE, &Overrides::default())
        .unwrap_or_else(|e| panic!("the effective config does not parse: {e}\n{shown}"));
    assert_eq!(
        again.to_toml(),
        shown,
        "the effective config changed on re-reading"
    );
}
