//! `import-haproxy`: the HAProxy configurations people migrate from (fixtures in
//! `tests/fixtures/haproxy/`) converted, checked with the proxy's own validation, and the
//! command run end to end into `check --config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use redis_master_proxy::config::{Config, Overrides};
use redis_master_proxy::tools::haproxy::{import, Import, ImportError, HEADER, PASSWORD_ENV};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy")
}

fn fixture(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validates like `check` does, with the password variable set (in the lookup handed to the
/// parser: the process environment is left alone while tests run in parallel).
fn validate(toml: &str) -> Config {
    let env = |v: &str| (v == PASSWORD_ENV).then(|| "test-password".to_string());
    Config::parse_env(toml, "imported", &Overrides::default(), &env)
        .unwrap_or_else(|e| panic!("the import does not validate: {e}\n{toml}"))
}

fn imported(text: &str) -> Import {
    let got = import(text).unwrap_or_else(|e| panic!("import failed: {e}\n{text}"));
    assert!(
        got.toml.starts_with(&format!("{HEADER}\n")),
        "no header:\n{}",
        got.toml
    );
    got
}

fn assert_warned(got: &Import, needle: &str, what: &str) {
    assert!(
        got.warnings.iter().any(|w| w.contains(needle)),
        "{what}: no warning contains {needle:?}; warnings:\n{}",
        got.warnings.join("\n")
    );
}

/// What a fixture must turn into.
struct Case {
    fixture: &'static str,
    /// `None`: not set, so the proxy's default.
    listen: Option<&'static str>,
    admin: Option<&'static str>,
    backends: &'static [&'static str],
    interval_ms: u64,
    timeout_ms: u64,
    rise: u32,
    fall: u32,
    connect_timeout_ms: u64,
    /// `None`: not set, so the proxy's default (derived from the descriptor limit).
    max_connections: Option<usize>,
    /// `None`: no `[auth]`; `Some(user)`: `[auth]` with that `username`.
    auth: Option<Option<&'static str>>,
    warnings: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        fixture: "production_sentinel.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: None,
        backends: &[
            "redis-v2-0.redis-v2-headless.redis.svc.cluster.local:6379",
            "redis-v2-1.redis-v2-headless.redis.svc.cluster.local:6379",
            "redis-v2-2.redis-v2-headless.redis.svc.cluster.local:6379",
        ],
        interval_ms: 2000,
        // timeout check 5s is not below inter 2s: half of it.
        timeout_ms: 1000,
        rise: 2,
        fall: 3,
        connect_timeout_ms: 5000,
        max_connections: Some(4096),
        auth: None,
        warnings: &[
            "health.timeout",
            "not mapped: `balance roundrobin` (backend redis_sentinel)",
            "sentinel.master_name is set to `mymaster`",
            "sentinel.check_timeout",
            "`backend redis_sentinel` became [sentinel]",
        ],
    },
    Case {
        fixture: "production.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: Some("0.0.0.0:8404"),
        backends: &[
            "redis-v2-0.redis-v2-headless.redis.svc.cluster.local:6379",
            "redis-v2-1.redis-v2-headless.redis.svc.cluster.local:6379",
            "redis-v2-2.redis-v2-headless.redis.svc.cluster.local:6379",
        ],
        interval_ms: 1000,
        // timeout check 2s is not below the 1s interval: clamped to half of it.
        timeout_ms: 500,
        rise: 1,
        fall: 1,
        connect_timeout_ms: 3000,
        max_connections: Some(20000),
        auth: Some(None),
        warnings: &[
            "health.timeout",
            "not mapped: `balance first`",
            "not mapped: `timeout client 6h`",
            "not mapped: `timeout server 6h`",
            "not mapped: `option tcplog`",
            "not mapped: `maxconn 5000` (on server redis-0, redis-1, redis-2)",
            "`on-marked-down shutdown-sessions` needs no setting",
            "outside double quotes",
            "HAProxy's stats page",
            "global maxconn",
        ],
    },
    Case {
        fixture: "listen.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: Some("127.0.0.1:9000"),
        backends: &["10.0.1.10:6379", "10.0.1.11:6379"],
        // `inter 500`: a bare number is milliseconds; no timeout check, so inter, halved.
        interval_ms: 500,
        timeout_ms: 250,
        rise: 2,
        fall: 2,
        connect_timeout_ms: 500,
        max_connections: Some(3000),
        auth: Some(Some("haproxy-check")),
        warnings: &[
            "not mapped: `weight 100` (on server redis-a, redis-b)",
            "not mapped: `backup` (on server redis-b)",
            "as user `haproxy-check`",
        ],
    },
    Case {
        fixture: "redis_check.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: None,
        backends: &["192.168.10.1:6379", "192.168.10.2:6379"],
        // Nothing set: HAProxy's defaults (inter 2s, rise 2, fall 3) are kept.
        interval_ms: 2000,
        timeout_ms: 1000,
        rise: 2,
        fall: 3,
        connect_timeout_ms: 1000,
        max_connections: None,
        auth: None,
        warnings: &[
            "`option redis-check` only sends PING",
            "HAProxy's defaults were kept",
            "`admin` is not set",
        ],
    },
    Case {
        fixture: "two_backends.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: None,
        backends: &[
            "redis-0.redis:6379",
            "redis-1.redis:6379",
            "redis-2.redis:6379",
        ],
        interval_ms: 1000,
        timeout_ms: 300,
        rise: 3,
        fall: 2,
        connect_timeout_ms: 2000,
        max_connections: Some(10000),
        auth: None,
        warnings: &[
            "picked `backend redis_write` because its checks look for role:master",
            "ignored `backend redis_read`",
        ],
    },
    Case {
        fixture: "literal_password.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: Some("0.0.0.0:8404"),
        backends: &["redis-0.redis:6379", "redis-1.redis:6379"],
        interval_ms: 1000,
        timeout_ms: 500,
        rise: 2,
        fall: 3,
        connect_timeout_ms: 3000,
        max_connections: None,
        auth: Some(None),
        warnings: &[
            "literal AUTH password",
            "environment variable REDIS_PASSWORD",
            "consider rotating it",
            "`stats auth` credentials are not carried over",
        ],
    },
    Case {
        fixture: "resolvers.cfg",
        listen: Some("0.0.0.0:6379"),
        admin: None,
        backends: &[
            "redis-0.redis-headless.redis.svc.cluster.local:6379",
            "redis-1.redis-headless.redis.svc.cluster.local:6379",
            // No port in haproxy.cfg: 6379 assumed.
            "redis-2.redis-headless.redis.svc.cluster.local:6379",
        ],
        // From `default-server inter 2s`.
        interval_ms: 2000,
        timeout_ms: 1000,
        rise: 2,
        fall: 3,
        connect_timeout_ms: 1000,
        max_connections: None,
        auth: None,
        warnings: &[
            "`resolvers` and `init-addr` need no setting",
            "resolves each backend's name again at every check",
            "server `redis-2`",
            "has no port",
            "assumed 6379",
            "not mapped: `resolve-prefer ipv4`",
        ],
    },
];

/// Fixtures that must be refused, and a word the error must contain.
const REFUSED: &[(&str, &str)] = &[("no_servers.cfg", "no `server` line")];

#[test]
fn fixtures_convert_to_valid_configs() {
    let defaults = Config::default();
    for c in CASES {
        let got = imported(&fixture(c.fixture));
        let cfg = validate(&got.toml);
        let f = c.fixture;
        let listen = c.listen.map_or(defaults.listen.to_string(), String::from);
        assert_eq!(cfg.listen.to_string(), listen, "{f}: listen");
        let admin = c.admin.map_or(defaults.admin.to_string(), String::from);
        assert_eq!(cfg.admin.to_string(), admin, "{f}: admin");
        let backends: Vec<String> = cfg.backends.iter().map(|b| b.to_string()).collect();
        assert_eq!(backends, c.backends, "{f}: backends");
        assert_eq!(
            cfg.health.interval.0,
            Duration::from_millis(c.interval_ms),
            "{f}: interval"
        );
        assert_eq!(
            cfg.health.timeout.0,
            Duration::from_millis(c.timeout_ms),
            "{f}: timeout"
        );
        assert_eq!(
            (cfg.health.rise, cfg.health.fall),
            (c.rise, c.fall),
            "{f}: rise/fall"
        );
        assert_eq!(
            cfg.connect_timeout.0,
            Duration::from_millis(c.connect_timeout_ms),
            "{f}: connect_timeout"
        );
        assert_eq!(
            cfg.max_connections,
            c.max_connections
                .unwrap_or(Config::default().max_connections),
            "{f}: max_connections"
        );
        match (c.auth, &cfg.auth) {
            (None, None) => {}
            (Some(user), Some(a)) => {
                assert_eq!(a.username.as_deref(), user, "{f}: auth.username");
                assert_eq!(a.source, format!("env:{PASSWORD_ENV}"), "{f}: auth source");
            }
            (want, got) => panic!("{f}: auth: want {want:?}, got {got:?}"),
        }
        for needle in c.warnings {
            assert_warned(&got, needle, f);
        }
        assert!(got.warnings.iter().all(|w| !w.trim().is_empty()));
    }
}

#[test]
fn every_fixture_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    names.sort();
    let mut covered: Vec<String> = CASES
        .iter()
        .map(|c| c.fixture)
        .chain(REFUSED.iter().map(|(f, _)| *f))
        .map(String::from)
        .collect();
    covered.sort();
    assert_eq!(names, covered, "fixtures and test table differ");
    assert!(names.len() >= 7);
}

#[test]
fn refused_configs_say_why() {
    for (f, needle) in REFUSED {
        match import(&fixture(f)) {
            Err(e @ ImportError::NoBackend(_)) => {
                assert!(e.to_string().contains(needle), "{f}: {e}")
            }
            other => panic!("{f}: want NoBackend, got {other:?}"),
        }
    }
    let cases: &[(&str, &str)] = &[
        (
            "backend b\n  server-template redis 3 redis-headless.redis.svc:6379 check\n",
            "server-template redis",
        ),
        (
            "backend b\n  server a unix@/run/redis.sock check\n  server c \"${HOST}:6379\"\n",
            "environment variable",
        ),
        ("frontend f\n  bind :6379\n", "no `server` line"),
        ("", "no `server` line"),
    ];
    for (text, needle) in cases {
        match import(text) {
            Err(e @ ImportError::NoBackend(_)) => {
                assert!(e.to_string().contains(needle), "{text:?}: {e}")
            }
            other => panic!("{text:?}: want NoBackend, got {other:?}"),
        }
    }
    match import("backend b\n  server a h:1\n  tcp-check send \"PING\n") {
        Err(ImportError::Syntax { line: 3, message }) => assert!(message.contains("quote")),
        other => panic!("want a syntax error on line 3, got {other:?}"),
    }
}

/// A literal password must never reach the TOML or the warnings, whatever way the file
/// holds it.
#[test]
fn literal_passwords_never_leave_the_file() {
    const PW: &str = "Zq8-Literal-Redis-Passw0rd";
    let got = imported(&fixture("literal_password.cfg"));
    for secret in [PW, "Adm1n-Stats-Passw0rd"] {
        assert!(
            !got.toml.contains(secret),
            "{secret} in the TOML:\n{}",
            got.toml
        );
        for w in &got.warnings {
            assert!(!w.contains(secret), "{secret} in a warning: {w}");
        }
    }

    let hex: String = format!("AUTH {PW}\r\n")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let backend = |checks: &str| {
        format!(
            "frontend f\n  bind :6379\n  default_backend b\nbackend b\n  option tcp-check\n\
             {checks}\n  tcp-check send info\\ replication\\r\\n\n\
             tcp-check expect string role:master\n  server r0 r0.redis:6379 check\n"
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "escaped",
            backend(&format!("  tcp-check send AUTH\\ {PW}\\r\\n")),
        ),
        (
            "quoted",
            backend(&format!("  tcp-check send \"AUTH {PW}\\r\\n\"")),
        ),
        (
            "single quoted",
            backend(&format!("  tcp-check send 'AUTH {PW}'")),
        ),
        (
            "with a user",
            backend(&format!("  tcp-check send AUTH\\ ops\\ {PW}\\r\\n")),
        ),
        (
            "RESP",
            backend(&format!(
                "  tcp-check send *2\\r\\n$4\\r\\nAUTH\\r\\n${}\\r\\n{PW}\\r\\n",
                PW.len()
            )),
        ),
        ("binary", backend(&format!("  tcp-check send-binary {hex}"))),
        (
            "HELLO",
            backend(&format!("  tcp-check send \"HELLO 3 AUTH ops {PW}\\r\\n\"")),
        ),
        (
            "setenv",
            format!("global\n  setenv REDIS_PASSWORD {PW}\n")
                + &backend("  tcp-check send \"AUTH ${REDIS_PASSWORD}\\r\\n\""),
        ),
        (
            "variable default",
            backend(&format!(
                "  tcp-check send \"AUTH ${{REDIS_PASSWORD-{PW}}}\\r\\n\""
            )),
        ),
        (
            "malformed AUTH",
            backend(&format!("  tcp-check send AUTH\\ a\\ b\\ {PW}\\r\\n")),
        ),
    ];
    for (what, text) in &cases {
        let got = imported(text);
        assert!(
            !got.toml.contains(PW),
            "{what}: password in the TOML:\n{}",
            got.toml
        );
        for w in &got.warnings {
            assert!(!w.contains(PW), "{what}: password in a warning: {w}");
        }
        if *what != "malformed AUTH" {
            assert!(
                got.toml.contains("password_env = \"REDIS_PASSWORD\""),
                "{what}"
            );
            validate(&got.toml);
        }
    }
}

/// Smaller semantics, each on a minimal config: (what, haproxy.cfg, lines the TOML must
/// have, words some warning must contain).
#[test]
fn mapping_rules() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "HAProxy times: a bare number is milliseconds",
            "backend b\n  timeout check 150\n  timeout connect 2500\n  server a h:6379 check inter 1500\n",
            &["interval = \"1500ms\"", "timeout = \"150ms\"", "connect_timeout = \"2500ms\""],
            &[],
        ),
        (
            "minutes, and a server line over default-server over defaults",
            "defaults\n  default-server inter 5s rise 4\nbackend b\n  default-server inter 3s\n  \
             server a h:6379 check inter 1m\n",
            &["interval = \"60s\"", "rise = 4", "fall = 3"],
            &[],
        ),
        (
            "a timeout check below half the interval is kept",
            "defaults\n  timeout check 200ms\nbackend b\n  server a h:6379 check inter 1s\n",
            &["timeout = \"200ms\""],
            &[],
        ),
        (
            "servers that disagree: the first wins, with a warning",
            "backend b\n  server a h1:6379 check inter 1s\n  server c h2:6379 check inter 3s\n",
            &["interval = \"1s\""],
            &["the servers disagree on `inter`", "3s on `c`"],
        ),
        (
            "named defaults",
            "defaults fast\n  timeout connect 250ms\ndefaults\n  timeout connect 9s\n\
             backend b from fast\n  server a h:6379\n",
            &["connect_timeout = \"250ms\""],
            &["no `check`"],
        ),
        (
            "no frontend: listen left at the default",
            "backend b\n  server a h:6379 check\n",
            &[],
            &["`listen` is not set"],
        ),
        (
            "frontend maxconn over global",
            "global\n  maxconn 50000\nfrontend f\n  bind 10.0.0.1:6379\n  maxconn 1200\n  \
             default_backend b\nbackend b\n  server a h:6379 check\n",
            &["listen = \"10.0.0.1:6379\"", "max_connections = 1200"],
            &[],
        ),
        (
            "the bind on the Redis port wins; the others are reported",
            "frontend f\n  bind :7000\n  bind :6379,:6380 ssl crt /x.pem\n  default_backend b\n\
             backend b\n  server a h:6379 check\n",
            &["listen = \"0.0.0.0:6379\""],
            &["`bind :7000`", "`bind :6380`", "does not terminate TLS"],
        ),
        (
            "the frontend bound to 6379 picks the backend when no check looks for role:master",
            "frontend other\n  bind :7000\n  default_backend x\nfrontend redis\n  bind :6379\n  \
             default_backend y\nbackend x\n  server a x:6379 check\nbackend y\n  server a y:6379 check\n",
            &["\"y:6379\""],
            &["picked `backend y` because clients reach it on port 6379", "ignored `backend x`"],
        ),
        (
            "an ACL user from a RESP-encoded AUTH",
            "backend b\n  option tcp-check\n  tcp-check send *3\\r\\n$4\\r\\nAUTH\\r\\n$5\\r\\nproxy\\r\\n$17\\r\\n${REDIS_PASSWORD}\\r\\n\n  \
             server a h:6379 check\n",
            &["username = \"proxy\"", "password_env = \"REDIS_PASSWORD\""],
            &[],
        ),
        (
            "another variable name is reported, the import reads REDIS_PASSWORD",
            "backend b\n  tcp-check send \"AUTH ${REDIS_PASS}\\r\\n\"\n  server a h:6379 check\n",
            &["password_env = \"REDIS_PASSWORD\""],
            &["environment variable REDIS_PASS;"],
        ),
        (
            "IPv6 and duplicate servers",
            "backend b\n  server a [::1]:6379 check\n  server c ipv6@::1:6379 check\n  server d 10.0.0.1:7000 check\n",
            &["\"[::1]:6379\"", "\"10.0.0.1:7000\""],
            &["same address as `a`"],
        ),
        (
            "options without a counterpart, once each",
            "defaults\n  option redispatch\n  retries 3\n  option splice-auto\nbackend b\n  mode tcp\n  \
             balance roundrobin\n  server a h:6379 check slowstart 30s send-proxy agent-check agent-port 9999\n  \
             server c i:6379 check slowstart 30s\n",
            &[],
            &[
                "`slowstart 30s` (on server a, c)",
                "`send-proxy` (on server a)",
                "`agent-check` (on server a)",
                "`balance roundrobin`",
                "`option redispatch`",
                "`retries 3`",
                "`option splice-auto`",
            ],
        ),
        (
            "a backend in HTTP mode is reported",
            "backend b\n  mode http\n  server a h:6379 check\n",
            &[],
            &["`mode http`"],
        ),
        (
            "plain TCP checks do not look for the master",
            "backend b\n  server a h:6379 check\n",
            &[],
            &["only checked that a TCP connection opens"],
        ),
    ];
    for (what, text, lines, warnings) in cases {
        let got = imported(text);
        validate(&got.toml);
        for l in *lines {
            assert!(
                got.toml.lines().any(|x| x.starts_with(l) || x.contains(l)),
                "{what}: the TOML lacks {l:?}:\n{}",
                got.toml
            );
        }
        for needle in *warnings {
            assert_warned(&got, needle, what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The command end to end.

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-master-proxy"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_import(path: &Path) -> Output {
    bin()
        .arg("import-haproxy")
        .arg(path)
        .env_remove(PASSWORD_ENV)
        .output()
        .unwrap()
}

#[test]
fn command_output_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    for c in CASES {
        let out = run_import(&fixtures().join(c.fixture));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", c.fixture);
        assert!(stdout.starts_with(HEADER), "{}: {stdout}", c.fixture);
        assert!(!stderr.is_empty(), "{}: no warnings", c.fixture);
        for l in stderr.lines() {
            assert!(l.starts_with("warning: "), "{}: {l:?}", c.fixture);
        }

        let toml = dir.path().join(c.fixture.replace(".cfg", ".toml"));
        std::fs::write(&toml, &stdout).unwrap();
        let check = bin()
            .args(["check", "--config"])
            .arg(&toml)
            .env(PASSWORD_ENV, "a-password-for-check")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}: check refused the import: {}\n{stdout}",
            c.fixture,
            text(&check.stderr)
        );
        let shown = text(&check.stdout);
        for b in c.backends {
            assert!(shown.contains(b), "{}: check does not show {b}", c.fixture);
        }
        if c.auth.is_some() {
            assert!(!shown.contains("a-password-for-check"), "{shown}");
            // The file needs the variable where the proxy runs.
            let unset = bin()
                .args(["check", "--config"])
                .arg(&toml)
                .env_remove(PASSWORD_ENV)
                .output()
                .unwrap();
            assert_eq!(unset.status.code(), Some(2), "{}", c.fixture);
            assert!(text(&unset.stderr).contains(PASSWORD_ENV));
        }
    }
}

#[test]
fn command_never_prints_a_literal_password() {
    let out = run_import(&fixtures().join("literal_password.cfg"));
    assert_eq!(out.status.code(), Some(0));
    let all = text(&out.stdout) + &text(&out.stderr);
    for secret in ["Zq8-Literal-Redis-Passw0rd", "Adm1n-Stats-Passw0rd"] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    assert!(text(&out.stderr).contains("warning: the checks send a literal AUTH password"));
}

#[test]
fn command_exits_2_without_a_usable_backend() {
    let out = run_import(&fixtures().join("no_servers.cfg"));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("no_servers.cfg"), "{stderr}");
    assert!(stderr.contains("no usable backend"), "{stderr}");

    let out = run_import(Path::new("/nonexistent/haproxy.cfg"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/haproxy.cfg"));
}

/// The production HAProxy of issue 12 serves two frontends, the master on 6379 and the
/// sentinels on 26379: it imports into one TOML with both listeners and the same check rhythm
/// (the master's `inter 2s fall 3 rise 2`, the sentinels' `inter 5s`), and `check` accepts it.
#[test]
fn both_haproxy_frontends_become_one_config() {
    let got = imported(&fixture("production_sentinel.cfg"));
    let cfg = validate(&got.toml);
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:6379");
    assert_eq!(cfg.health.interval.0, Duration::from_secs(2));
    assert_eq!((cfg.health.rise, cfg.health.fall), (2, 3));
    let s = cfg.sentinel.as_ref().expect("[sentinel] imported");
    assert_eq!(
        s.listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:26379")
    );
    assert_eq!(s.check_interval.0, Duration::from_secs(5));
    assert!(s.check_timeout.0 < s.check_interval.0);
    let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        addrs,
        (0..3)
            .map(|i| format!("redis-v2-{i}.redis-v2-headless.redis.svc.cluster.local:26379"))
            .collect::<Vec<_>>()
    );
    // The sentinel backend is mapped, not reported as ignored.
    assert!(
        !got.warnings.iter().any(|w| w.contains("ignored")),
        "{}",
        got.warnings.join("\n")
    );
    // And the command itself: import-haproxy, then check on its output.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redis-master-proxy"))
        .arg("import-haproxy")
        .arg(fixtures().join("production_sentinel.cfg"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let toml = dir.path().join("imported.toml");
    std::fs::write(&toml, &out.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redis-master-proxy"))
        .args(["check", "--config"])
        .arg(&toml)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen = \"0.0.0.0:26379\""), "{stdout}");
}
