//! Configuration: the TOML file format, command-line overrides, and the validated [`Config`].
//!
//! The file is parsed into `Raw*` structs (`deny_unknown_fields`, so a typo is an error, not a
//! silently ignored setting); durations and addresses are checked while parsing so the TOML
//! parser can point at the line. Cross-field rules (the check timeout must be shorter than the
//! interval, at least one backend, …) are checked afterwards and name the key. Every error
//! names the file.
//!
//! Passwords are never written in the TOML: `password_env` or `password_file` name where to read
//! them, and they are held in a [`Secret`] that prints as `***`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a configuration error was found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// TOML syntax or a value of the wrong shape; the message carries the line and column.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A value that parsed but breaks a rule; `key` names it (e.g. `health.timeout`).
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// A duration written as `250ms`, `1s`, `1.5s` or `2m` (a bare number is rejected, because a
/// unit-less `1` is ambiguous between seconds and milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{s}` has no unit (write e.g. `500ms`, `1s`, `2m`)"))?;
        let (num, unit) = s.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (write e.g. `500ms`, `1s`, `2m`)"))?;
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}` (use `ms`, `s` or `m`)"
                ))
            }
        };
        if !secs.is_finite() || secs > 86_400.0 {
            return Err(format!("`{s}` is out of range (at most 24 h)"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `host:port` endpoint. The host may be a name: it is resolved again at every use, so a pod
/// that restarts with a new IP is followed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not `host:port`"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}` has an empty host"));
        }
        // A DNS name (letters, digits, `-`, `_`, `.`) or an IP literal; anything else is a typo.
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '%');
        if host.len() > 253 || !host.chars().all(valid) {
            return Err(format!(
                "`{s}`: `{host}` is not a host name or IP address (letters, digits, `-`, `_`, `.`; at most 253)"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}`: `{port}` is not a port number"))?;
        if port == 0 {
            return Err(format!("`{s}`: port 0 is not a backend port"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A password. `Debug`, `Display` and `Serialize` print a mask, so it cannot leak through logs,
/// `check` output or `/status`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value: used when sending `AUTH`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// How the relay moves bytes (see `relay.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// Copy small request/response traffic, move a direction to splice when it sees bulk reads.
    #[default]
    Auto,
    /// Always splice(2) through a pipe (falls back to copy where the kernel refuses).
    Splice,
    /// Always copy through a userspace buffer.
    Copy,
}

impl FromStr for RelayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RelayMode::Auto),
            "splice" => Ok(RelayMode::Splice),
            "copy" => Ok(RelayMode::Copy),
            _ => Err(format!("`{s}` is not one of auto, splice, copy")),
        }
    }
}

/// What the client listener does with a client (see `mux/mod.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One backend connection per client, bytes relayed as they are.
    #[default]
    Relay,
    /// Commands without connection state share a few backend connections per data-path thread;
    /// a client that uses connection state is pinned to its own (the relay).
    Multiplex,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "relay" => Ok(Mode::Relay),
            "multiplex" => Ok(Mode::Multiplex),
            _ => Err(format!("`{s}` is not one of relay, multiplex")),
        }
    }
}

/// Which data-path thread a new client session runs on (see `data/workers.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// A client host's sessions share one thread (the least loaded when its first one opens):
    /// what it sends on several connections at once reaches the master in its order, as over a
    /// direct connection. One host uses one thread.
    #[default]
    Host,
    /// Every session goes to the least-loaded thread: one busy host uses every thread, and
    /// commands it sends on two connections at the same instant may reach the master in either
    /// order (as through a multi-threaded HAProxy).
    Connection,
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(Placement::Host),
            "connection" => Ok(Placement::Connection),
            _ => Err(format!("`{s}` is not one of host, connection")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file format.

/// Reads a whole number that fits `T`, saying so in errors ("expected a whole number from 0 to
/// 4294967295") instead of naming a Rust type.
fn count<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + Bounded,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<u64> + Bounded> serde::de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from 0 to {}", T::MAX)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
            }
        }
    }
    d.deserialize_u64(V(std::marker::PhantomData)).map(Some)
}

/// The largest value of a count type, for [`count`]'s message.
trait Bounded {
    const MAX: u64;
}
impl Bounded for u32 {
    const MAX: u64 = u32::MAX as u64;
}
impl Bounded for usize {
    const MAX: u64 = usize::MAX as u64;
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a TOML table of settings")]
struct RawConfig {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    backends: Option<Vec<HostPort>>,
    #[serde(default, deserialize_with = "count")]
    max_connections: Option<usize>,
    connect_timeout: Option<Dur>,
    drain_timeout: Option<Dur>,
    wait_for_master: Option<Dur>,
    shutdown_grace: Option<Dur>,
    relay: Option<RelayMode>,
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "count")]
    threads: Option<usize>,
    placement: Option<Placement>,
    health: Option<RawHealth>,
    auth: Option<RawAuth>,
    sentinel: Option<RawSentinel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`health` to be a table ([health] with interval, timeout, rise, fall, down_after)"
)]
struct RawHealth {
    interval: Option<Dur>,
    timeout: Option<Dur>,
    #[serde(default, deserialize_with = "count")]
    rise: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    fall: Option<u32>,
    down_after: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`auth` to be a table ([auth] or [sentinel.auth] with username, password_env or password_file)"
)]
struct RawAuth {
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Accepted by the parser only to be refused with a clear message.
    password: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`sentinel` to be a table ([sentinel] with addresses, master_name, listen)"
)]
struct RawSentinel {
    addresses: Option<Vec<HostPort>>,
    master_name: Option<String>,
    listen: Option<SocketAddr>,
    check_interval: Option<Dur>,
    check_timeout: Option<Dur>,
    auth: Option<RawAuth>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// Everything the proxy runs with, validated.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Where clients connect (the `redis-master:6379` endpoint).
    pub listen: SocketAddr,
    /// The admin HTTP listener (`/metrics`, `/livez`, `/readyz`, `/status`); loopback by default
    /// because it reveals topology.
    pub admin: SocketAddr,
    /// Candidate masters, in config order (the last tie-breaker of the election).
    pub backends: Vec<HostPort>,
    /// Client connections beyond this are refused at once, so a connection storm cannot exhaust
    /// file descriptors needed by the sessions that already work. Unset, it is what the
    /// descriptor limit holds ([`max_connections_for`]), so the default never overcommits.
    pub max_connections: usize,
    /// Bound on connecting to the master for a client session.
    pub connect_timeout: Dur,
    /// How long a session bound to a replaced master may deliver replies already on their way.
    pub drain_timeout: Dur,
    /// How long a new client waits for a master while there is none (during a failover).
    pub wait_for_master: Dur,
    /// SIGTERM: how long sessions may drain before the process exits.
    pub shutdown_grace: Dur,
    pub relay: RelayMode,
    /// Relay every client 1:1 (the default), or multiplex what carries no connection state.
    pub mode: Mode,
    /// Data-path threads (sessions run on them; the control plane has its own): 0 (the
    /// default) is one per CPU available to the process (cgroup quotas included), 1 runs
    /// everything on one thread, N starts N. Read at start only.
    pub threads: usize,
    /// Which data-path thread a client session runs on. Read at start only.
    pub placement: Placement,
    pub health: Health,
    /// Credentials for the health checks (`AUTH [username] password`).
    pub auth: Option<Auth>,
    pub sentinel: Option<SentinelConfig>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// Time between check rounds.
    pub interval: Dur,
    /// Bound on one check (resolve + connect + AUTH + INFO); must be shorter than `interval`.
    pub timeout: Dur,
    /// Consecutive passing checks before a down backend counts as up again.
    pub rise: u32,
    /// Consecutive failing checks before an up backend counts as down.
    pub fall: u32,
    /// How long a backend whose checks time out (slow, not refused) stays *suspect* before it
    /// counts as down: its sessions are paused meanwhile, not closed.
    pub down_after: Dur,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// ACL user; `None` sends the one-argument `AUTH password`.
    pub username: Option<String>,
    pub password: Secret,
    /// Where the password came from, shown by `check` instead of the value.
    pub source: String,
}

/// Written back as the file had it (`username`, then `password_env` or `password_file`), so
/// `check`'s output is a config `check` accepts; the password itself is never written.
impl Serialize for Auth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(u) = &self.username {
            m.serialize_entry("username", u)?;
        }
        if let Some(var) = self.source.strip_prefix("env:") {
            m.serialize_entry("password_env", var)?;
        } else if let Some(path) = self.source.strip_prefix("file:") {
            m.serialize_entry("password_file", path)?;
        }
        m.end()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentinelConfig {
    pub addresses: Vec<HostPort>,
    pub master_name: String,
    /// The sentinel listener: clients connecting here are relayed to one healthy sentinel of
    /// `addresses` (HAProxy's second frontend, `bind *:26379`). `None`: no such listener.
    pub listen: Option<SocketAddr>,
    /// Time between the PING checks of the sentinels the sentinel listener relays to.
    pub check_interval: Dur,
    /// Bound on one of those checks; shorter than `check_interval`.
    pub check_timeout: Dur,
    pub auth: Option<Auth>,
}

/// Default `sentinel.check_interval`: HAProxy's production sentinel backend used `inter 5s`;
/// a sentinel listener only needs to notice a dead sentinel before clients give up on it.
pub const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default `sentinel.check_timeout`.
pub const SENTINEL_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections the admin listener serves at once. Each is a task and a descriptor (a few KiB);
/// 1,024 lets probes through a thousand idle or trickling connections while bounding the
/// descriptors the admin listener can take from client sessions (see [`descriptor_reserve`]).
pub const MAX_ADMIN_CONNECTIONS: usize = 1024;

/// Descriptors kept for everything but client sessions when `max_connections` is derived from
/// the descriptor limit: the admin listener's connections (up to 1,024, never more than a
/// quarter of the limit), checks, sentinel links, listeners and the process's own files.
pub fn descriptor_reserve(limit: u64) -> u64 {
    64 + (limit / 4).min(MAX_ADMIN_CONNECTIONS as u64)
}

/// The largest default `max_connections`, reached from a descriptor limit of about 21,000:
/// beyond it more sessions are an operator's decision, not a default.
pub const MAX_DEFAULT_CONNECTIONS: usize = 10_000;

/// The default `max_connections` under a descriptor limit: what fits beside the reserve, two
/// descriptors per session (client and master), at most [`MAX_DEFAULT_CONNECTIONS`].
pub fn max_connections_for(limit: u64) -> usize {
    let fits = limit.saturating_sub(descriptor_reserve(limit)) / 2;
    (fits.min(MAX_DEFAULT_CONNECTIONS as u64) as usize).max(1)
}

/// The default `max_connections` on this machine: from the hard descriptor limit, which the
/// proxy raises its soft limit to at start.
fn default_max_connections() -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((_, hard)) if hard != rlimit::INFINITY => max_connections_for(hard),
        _ => MAX_DEFAULT_CONNECTIONS,
    }
}

/// Upper bound of `health.interval`. It also keeps the `health.down_after` that follows an
/// unset one up (twice the interval) within what a duration may be, so the effective config
/// `check` prints reads back.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Upper bound of `threads`. A data-path thread is worth having only while there is a CPU to
/// run it: past the CPU count threads only add context switches and memory (a runtime and a
/// stack each, and a thread the system may refuse at start). 1,024 is above any machine this
/// proxy runs on while keeping a typo (`threads = 100000`) from reaching the system's limits.
pub const MAX_THREADS: usize = 1024;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:16379";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8404";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("constant address"),
            admin: DEFAULT_ADMIN.parse().expect("constant address"),
            backends: Vec::new(),
            max_connections: default_max_connections(),
            connect_timeout: Dur(Duration::from_secs(1)),
            drain_timeout: Dur(Duration::from_secs(2)),
            wait_for_master: Dur(Duration::from_secs(3)),
            shutdown_grace: Dur(Duration::from_secs(10)),
            relay: RelayMode::Auto,
            mode: Mode::Relay,
            threads: 0,
            placement: Placement::Host,
            health: Health {
                interval: Dur(Duration::from_secs(1)),
                timeout: Dur(Duration::from_millis(500)),
                rise: 2,
                fall: 1,
                down_after: Dur(Duration::from_secs(10)),
            },
            auth: None,
            sentinel: None,
        }
    }
}

/// Settings given on the command line; each one that is set wins over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub backends: Vec<HostPort>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub relay: Option<RelayMode>,
    pub mode: Option<Mode>,
    pub threads: Option<usize>,
    pub placement: Option<Placement>,
}

impl Overrides {
    /// Writes the flags that are set into the raw file, exactly where the file would have them,
    /// so one validation sees both.
    fn apply(&self, raw: &mut RawConfig) {
        if self.listen.is_some() {
            raw.listen = self.listen;
        }
        if self.admin.is_some() {
            raw.admin = self.admin;
        }
        if !self.backends.is_empty() {
            raw.backends = Some(self.backends.clone());
        }
        if self.relay.is_some() {
            raw.relay = self.relay;
        }
        if self.mode.is_some() {
            raw.mode = self.mode;
        }
        if self.threads.is_some() {
            raw.threads = self.threads;
        }
        if self.placement.is_some() {
            raw.placement = self.placement;
        }
        if self.interval.is_some() || self.timeout.is_some() {
            let h = raw.health.get_or_insert_with(RawHealth::default);
            if self.interval.is_some() {
                h.interval = self.interval;
            }
            if self.timeout.is_some() {
                h.timeout = self.timeout;
            }
        }
    }

    /// The flag that set `key`, if one did.
    fn flag_for(&self, key: &str) -> Option<&'static str> {
        let set = match key {
            "listen" => self.listen.is_some(),
            "admin" => self.admin.is_some(),
            "backends" => !self.backends.is_empty(),
            "relay" => self.relay.is_some(),
            "mode" => self.mode.is_some(),
            "threads" => self.threads.is_some(),
            "placement" => self.placement.is_some(),
            "health.interval" => self.interval.is_some(),
            "health.timeout" => self.timeout.is_some(),
            _ => false,
        };
        let flag = match key {
            "listen" => "--listen",
            "admin" => "--admin",
            "backends" => "--backend",
            "relay" => "--relay",
            "mode" => "--mode",
            "threads" => "--threads",
            "placement" => "--placement",
            "health.interval" => "--interval",
            "health.timeout" => "--timeout",
            _ => return None,
        };
        set.then_some(flag)
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), &Overrides::default())
    }

    /// Reads an optional file, applies the overrides, validates the result.
    pub fn load_with(path: Option<&Path>, o: &Overrides) -> Result<Config, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: p.display().to_string(),
                    source,
                })?;
                Config::parse(&text, &p.display().to_string(), o)
            }
            None => Config::parse("", "<command line>", o),
        }
    }

    /// Parses TOML text, writes the flags into it, validates the result: the one validation
    /// behind `check`, `run` and a reload. `file` names the source in errors; a key set by a
    /// flag is reported with the flag.
    pub fn parse(text: &str, file: &str, o: &Overrides) -> Result<Config, ConfigError> {
        Config::parse_env(text, file, o, &|var| std::env::var(var).ok())
    }

    /// [`Config::parse`] with the environment given as a lookup (`password_env` reads it), so
    /// tests need not change the process's environment while other tests run.
    pub fn parse_env(
        text: &str,
        file: &str,
        o: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        o.apply(&mut raw);
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message: match o.flag_for(key) {
                Some(flag) => format!("{message} (set by {flag})"),
                None => message,
            },
        };
        let d = Config::default();
        let raw_health = raw.health.unwrap_or_default();
        let interval = raw_health.interval.unwrap_or(d.health.interval);
        let health = Health {
            interval,
            timeout: raw_health.timeout.unwrap_or(d.health.timeout),
            rise: raw_health.rise.unwrap_or(d.health.rise),
            fall: raw_health.fall.unwrap_or(d.health.fall),
            // Unset, it follows a long interval up: a suspect master gets two more checks.
            down_after: raw_health.down_after.unwrap_or(Dur(d
                .health
                .down_after
                .0
                .max(interval.0 * 2))),
        };
        let timeout_is_default = raw_health.timeout.is_none();
        let mut backends = raw.backends.unwrap_or_default();
        let mut cfg = Config {
            listen: raw.listen.unwrap_or(d.listen),
            admin: raw.admin.unwrap_or(d.admin),
            backends: Vec::new(),
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
            connect_timeout: raw.connect_timeout.unwrap_or(d.connect_timeout),
            drain_timeout: raw.drain_timeout.unwrap_or(d.drain_timeout),
            wait_for_master: raw.wait_for_master.unwrap_or(d.wait_for_master),
            shutdown_grace: raw.shutdown_grace.unwrap_or(d.shutdown_grace),
            relay: raw.relay.unwrap_or(d.relay),
            mode: raw.mode.unwrap_or(d.mode),
            threads: raw.threads.unwrap_or(d.threads),
            placement: raw.placement.unwrap_or(d.placement),
            health,
            auth: raw
                .auth
                .map(|a| resolve_auth(a, "auth", file, env))
                .transpose()?,
            sentinel: None,
        };

        if backends.is_empty() {
            return Err(invalid(
                "backends",
                "at least one backend is needed (e.g. backends = [\"127.0.0.1:6379\"], or --backend)"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for b in &backends {
            if !seen.insert(b.clone()) {
                return Err(invalid("backends", format!("`{b}` is listed twice")));
            }
        }
        cfg.backends = std::mem::take(&mut backends);
        if overlaps(cfg.admin, cfg.listen) {
            return Err(invalid(
                "admin",
                format!(
                    "{} overlaps listen ({}): the admin listener needs its own port",
                    cfg.admin, cfg.listen
                ),
            ));
        }
        if cfg.threads > MAX_THREADS {
            return Err(invalid(
                "threads",
                format!(
                    "{} is more than {MAX_THREADS}; use 0 for one per CPU available",
                    cfg.threads
                ),
            ));
        }
        if cfg.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        let h = &cfg.health;
        if h.interval.0 < Duration::from_millis(10) {
            return Err(invalid("health.interval", "must be at least 10ms".into()));
        }
        if h.interval.0 > MAX_INTERVAL {
            return Err(invalid(
                "health.interval",
                format!(
                    "{} is too long (at most 1h): the checks are how a new master is found and a \
                     lost one noticed",
                    h.interval
                ),
            ));
        }
        if h.timeout.0.is_zero() {
            return Err(invalid("health.timeout", "must be more than 0".into()));
        }
        if h.timeout.0 >= h.interval.0 {
            let interval_from = o
                .flag_for("health.interval")
                .map(|f| format!(", set by {f}"))
                .unwrap_or_default();
            let default = if timeout_is_default {
                " (the default; set health.timeout, or --timeout, below the interval)"
            } else {
                ""
            };
            return Err(invalid(
                "health.timeout",
                format!(
                    "{}{default} must be shorter than health.interval ({}{interval_from}), \
                     or checks overlap",
                    h.timeout, h.interval
                ),
            ));
        }
        if h.rise == 0 {
            return Err(invalid("health.rise", "must be at least 1".into()));
        }
        if h.fall == 0 {
            return Err(invalid("health.fall", "must be at least 1".into()));
        }
        if h.down_after.0 <= h.interval.0 {
            return Err(invalid(
                "health.down_after",
                format!(
                    "{} must be longer than health.interval ({}): a suspect master needs at least one more check",
                    h.down_after, h.interval
                ),
            ));
        }
        for (key, v) in [
            ("connect_timeout", cfg.connect_timeout),
            ("drain_timeout", cfg.drain_timeout),
            ("shutdown_grace", cfg.shutdown_grace),
        ] {
            if v.0.is_zero() {
                return Err(invalid(key, "must be more than 0".into()));
            }
        }
        if let Some(s) = raw.sentinel {
            let addresses = s.addresses.unwrap_or_default();
            if addresses.is_empty() {
                return Err(invalid(
                    "sentinel.addresses",
                    "at least one sentinel address is needed when [sentinel] is present".into(),
                ));
            }
            let master_name = s.master_name.unwrap_or_default();
            if master_name.len() > 128 || !master_name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "sentinel.master_name",
                    format!("`{master_name}` is not a sentinel master name (printable, no spaces, at most 128)"),
                ));
            }
            if master_name.is_empty() {
                return Err(invalid(
                    "sentinel.master_name",
                    "the name the sentinels monitor (e.g. \"mymaster\") is needed".into(),
                ));
            }
            let check_interval = s.check_interval.unwrap_or(Dur(SENTINEL_CHECK_INTERVAL));
            let check_timeout = s.check_timeout.unwrap_or(Dur(SENTINEL_CHECK_TIMEOUT));
            if check_interval.0 < Duration::from_millis(10) {
                return Err(invalid(
                    "sentinel.check_interval",
                    "must be at least 10ms".into(),
                ));
            }
            if check_timeout.0.is_zero() || check_timeout.0 >= check_interval.0 {
                return Err(invalid(
                    "sentinel.check_timeout",
                    format!(
                        "{check_timeout} must be more than 0 and shorter than \
                         sentinel.check_interval ({check_interval})"
                    ),
                ));
            }
            if let Some(l) = s.listen {
                for (key, other) in [("listen", cfg.listen), ("admin", cfg.admin)] {
                    if overlaps(l, other) {
                        return Err(invalid(
                            "sentinel.listen",
                            format!("{l} overlaps {key} ({other}): it needs its own port"),
                        ));
                    }
                }
            }
            cfg.sentinel = Some(SentinelConfig {
                addresses,
                master_name,
                listen: s.listen,
                check_interval,
                check_timeout,
                auth: s
                    .auth
                    .map(|a| resolve_auth(a, "sentinel.auth", file, env))
                    .transpose()?,
            });
        }
        Ok(cfg)
    }

    /// The effective configuration as TOML, secrets masked (for `check`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Whether two listen addresses would collide: the same port (not 0, which picks a free one)
/// on the same address or where either is the wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn resolve_auth(
    a: RawAuth,
    key: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Auth, ConfigError> {
    let invalid = |k: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        key: format!("{key}.{k}"),
        message,
    };
    if a.password.is_some() {
        return Err(invalid(
            "password",
            "passwords are not written in the config file; use password_env (an environment \
             variable) or password_file"
                .into(),
        ));
    }
    let (password, source) = match (a.password_env, a.password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "password_env",
                "give either password_env or password_file, not both".into(),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "password_env",
                "AUTH needs a password: set password_env or password_file".into(),
            ))
        }
        (Some(var), None) => {
            let name_ok = var.len() <= 128
                && var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return Err(invalid(
                    "password_env",
                    format!("`{var}` is not an environment variable name"),
                ));
            }
            let v = env(&var).ok_or_else(|| {
                invalid(
                    "password_env",
                    format!("environment variable `{var}` is not set"),
                )
            })?;
            (v, format!("env:{var}"))
        }
        (None, Some(path)) => {
            if path.as_os_str().len() > 255 {
                return Err(invalid(
                    "password_file",
                    "the path is longer than 255 bytes".into(),
                ));
            }
            let v = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "password_file",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            // Secret files from Kubernetes often end with a newline that is not part of it.
            let v = v.trim_end_matches(['\r', '\n']).to_string();
            (v, format!("file:{}", path.display()))
        }
    };
    if password.is_empty() {
        let k = if source.starts_with("file:") {
            "password_file"
        } else {
            "password_env"
        };
        return Err(invalid(k, format!("the password from {source} is empty")));
    }
    if let Some(u) = &a.username {
        if u.is_empty() || u.len() > 128 || !u.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(
                "username",
                format!("`{u}` is not a valid ACL user name (printable, no spaces, at most 128)"),
            ));
        }
    }
    Ok(Auth {
        username: a.username,
        password: Secret::new(password),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", &Overrides::default())
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "1.5s".parse::<Dur>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        for bad in ["1", "s", "1h", "-1s", "1e999s", ""] {
            assert!(bad.parse::<Dur>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn host_port_forms() {
        let h: HostPort = "redis-v2-0.redis:6379".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("redis-v2-0.redis", 6379));
        let h: HostPort = "[::1]:6380".parse().unwrap();
        assert_eq!(h.host, "::1");
        assert_eq!(h.to_string(), "[::1]:6380");
        for bad in [
            "nohost", ":6379", "a:0", "a:99999", "a b:1", "a'b:1", "a\"b:1", "a/b:1",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad} should be refused");
        }
    }

    /// Each bad file must be refused with a message that names the key (and for parse errors the
    /// line), so an operator can fix it without reading the source.
    #[test]
    fn bad_configs_name_the_key() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["backends", "at least one backend"]),
            ("backends = []", &["backends"]),
            ("backends = [\"a:1\", \"a:1\"]", &["backends", "twice"]),
            ("backends = [\"a\"]", &["line 1", "host:port"]),
            ("backends = [\"a:1\"]\nbogus = 1", &["line 2", "bogus"]),
            (
                "backends = [\"a:1\"]\n[health]\ninterval = \"1\"",
                &["line 3", "no unit"],
            ),
            (
                "backends = [\"a:1\"]\n[health]\ntimeout = \"2s\"",
                &["health.timeout", "shorter"],
            ),
            ("backends = [\"a:1\"]\n[health]\nrise = 0", &["health.rise"]),
            ("backends = [\"a:1\"]\n[health]\nfall = 0", &["health.fall"]),
            (
                "backends = [\"a:1\"]\n[health]\ndown_after = \"1s\"",
                &["health.down_after", "longer than health.interval"],
            ),
            (
                "backends = [\"a:1\"]\n[health]\nintervall = \"1s\"",
                &["line 3", "intervall"],
            ),
            (
                "backends = [\"a:1\"]\nmax_connections = 0",
                &["max_connections"],
            ),
            (
                "backends = [\"a:1\"]\nlisten = \"nowhere\"",
                &["line 2", "listen"],
            ),
            (
                "backends = [\"a:1\"]\nrelay = \"fast\"",
                &["line 2", "relay"],
            ),
            (
                "backends = [\"a:1\"]\n[health]\ninterval = \"61m\"\ntimeout = \"1s\"",
                &["health.interval", "at most 1h"],
            ),
            (
                "backends = [\"a:1\"]\nplacement = \"thread\"",
                &["line 2", "placement", "host", "connection"],
            ),
            (
                "backends = [\"a:1\"]\n[auth]\npassword = \"x\"",
                &["auth.password", "password_env"],
            ),
            (
                "backends = [\"a:1\"]\n[auth]\nusername = \"u\"",
                &["auth.password_env"],
            ),
            (
                "backends = [\"a:1\"]\n[auth]\npassword_env = \"RMP_TEST_SURELY_UNSET\"",
                &["auth.password_env", "RMP_TEST_SURELY_UNSET", "not set"],
            ),
            (
                "backends = [\"a:1\"]\n[auth]\npassword_file = \"/nonexistent/pw\"",
                &["auth.password_file", "/nonexistent/pw"],
            ),
            (
                "backends = [\"a:1\"]\n[sentinel]\nmaster_name = \"m\"",
                &["sentinel.addresses"],
            ),
            (
                "backends = [\"a:1\"]\n[sentinel]\naddresses = [\"s:26379\"]",
                &["sentinel.master_name"],
            ),
            ("backends = [\"a:1\"\n", &["line"]),
            (
                "backends = [\"a:1\"]\nthreads = 100000",
                &["threads", "1024"],
            ),
            (
                "backends = [\"a:1\"]\nlisten = \"127.0.0.1:7000\"\nadmin = \"127.0.0.1:7000\"",
                &["`admin`", "listen"],
            ),
            (
                "backends = [\"a:1\"]\nlisten = \"0.0.0.0:7000\"\nadmin = \"127.0.0.1:7000\"",
                &["`admin`"],
            ),
            (
                "backends = [\"a:1\"]\nhealth = 5",
                &["line 2", "`health` to be a table"],
            ),
            (
                "backends = [\"a:1\"]\nauth = \"x\"",
                &["line 2", "`auth` to be a table"],
            ),
            (
                "backends = [\"a:1\"]\nsentinel = []",
                &["`sentinel` to be a table"],
            ),
            (
                "backends = [\"a:1\"]\nthreads = -1",
                &["line 2", "whole number"],
            ),
            (
                "backends = [\"a:1\"]\n[health]\nrise = \"2\"",
                &["line 3", "whole number"],
            ),
            (
                "backends = [\"a:1\"]\nlisten = \"0.0.0.0:6379\"\n[sentinel]\naddresses = [\"s:26379\"]\nmaster_name = \"m\"\nlisten = \"0.0.0.0:6379\"",
                &["sentinel.listen", "overlaps listen"],
            ),
            (
                "backends = [\"a:1\"]\n[sentinel]\naddresses = [\"s:26379\"]\nmaster_name = \"m\"\ncheck_interval = \"1s\"\ncheck_timeout = \"1s\"",
                &["sentinel.check_timeout", "shorter"],
            ),
            (
                "backends = [\"a:1\"]\n[health]\ninterval = \"100ms\"",
                &["health.timeout", "500ms", "the default"],
            ),
        ];
        for (text, needles) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains("test.toml"),
                "{text:?}: error does not name the file: {err}"
            );
            for n in *needles {
                assert!(err.contains(n), "{text:?}: error lacks {n:?}: {err}");
            }
            for internal in ["Raw", "usize", "u32", "struct"] {
                assert!(
                    !err.contains(internal),
                    "{text:?}: error shows an internal name: {err}"
                );
            }
        }
    }

    #[test]
    fn an_empty_password_is_reported_under_the_key_that_named_it() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "\n").unwrap();
        let text = format!(
            "backends = [\"a:1\"]\n[auth]\npassword_file = \"{}\"",
            pw.display()
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("key `auth.password_file`"), "{err}");
        assert!(err.contains("empty"), "{err}");
        let err = Config::parse_env(
            "backends = [\"a:1\"]\n[auth]\npassword_env = \"RMP_TEST_EMPTY_PW\"",
            "test.toml",
            &Overrides::default(),
            &|_| Some(String::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key `auth.password_env`"), "{err}");
    }

    #[test]
    fn the_default_max_connections_fits_the_descriptor_limit() {
        for (limit, want) in [
            (1024, 352),
            (4096, 1504),
            (20_000, 9456),
            (65_536, 10_000),
            (1 << 20, 10_000),
            (10, 1),
        ] {
            let n = max_connections_for(limit);
            assert_eq!(n, want, "limit {limit}");
            if limit > 100 {
                assert!(n as u64 * 2 + descriptor_reserve(limit) <= limit);
            }
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides {
            backends: vec!["127.0.0.1:7000".parse().unwrap()],
            interval: Some("2s".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::parse(
            "backends = [\"a:1\"]\n[health]\ninterval = \"1s\"",
            "t.toml",
            &o,
        )
        .unwrap();
        assert_eq!(c.backends, o.backends);
        assert_eq!(c.health.interval.0, Duration::from_secs(2));
    }

    #[test]
    fn password_from_file_is_masked() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let text = format!(
            "backends = [\"a:1\"]\n[auth]\nusername = \"proxy\"\npassword_file = \"{}\"",
            pw.display()
        );
        let c = parse(&text).unwrap();
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(auth.password.expose(), "hunter2");
        let shown = format!("{c:?}{}", c.to_toml());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                // Shipped configs read the password from an env var that may be unset here.
                let text = std::fs::read_to_string(&path).unwrap();
                let env = |v: &str| (v == "REDIS_PASSWORD").then(|| "example".to_string());
                Config::parse_env(
                    &text,
                    &path.display().to_string(),
                    &Overrides::default(),
                    &env,
                )
                .unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "expected the example and demo configs in {dir:?}");
    }
}
