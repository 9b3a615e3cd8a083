//! The command line: `check` on good and bad files, the shipped configs, `status`, and the proxy
//! with AUTH from an environment variable and a connection limit.

mod common;

use std::process::Command;

use common::proxy::{config_for, Proxy, FAST_HEALTH};
use common::RedisNode;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-master-proxy"))
}

#[test]
fn check_prints_the_effective_config_with_the_secret_masked() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "very-secret-value\n").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "backends = [\"redis-0.redis:6379\"]\n[auth]\npassword_file = \"{}\"\n",
            pw.display()
        ),
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("redis-0.redis:6379"));
    assert!(
        stdout.contains("interval = \"1s\""),
        "defaults are shown: {stdout}"
    );
    assert!(
        stdout.contains(&format!("password_file = \"{}\"", pw.display())),
        "the secret is shown as where it is read from: {stdout}"
    );
    assert!(!stdout.contains("very-secret-value"));
}

/// What `check` prints is a configuration `check` accepts, and prints again unchanged:
/// secrets as their references, every table in a form the file takes.
#[test]
fn check_output_is_accepted_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "very-secret-value\n").unwrap();
    let text = format!(
        "backends = [\"redis-0.redis:6379\", \"redis-1.redis:6379\"]\nthreads = 2\n\
         [auth]\nusername = \"proxy\"\npassword_file = \"{}\"\n\
         [sentinel]\naddresses = [\"s0:26379\"]\nmaster_name = \"mymaster\"\n\
         [sentinel.auth]\npassword_env = \"RMP_TEST_SENTINEL_PW\"\n",
        pw.display()
    );
    let run_check = |text: &str| {
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).unwrap();
        let out = bin()
            .args(["check", "--config"])
            .arg(&f)
            .env("RMP_TEST_SENTINEL_PW", "other-secret")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = run_check(&text);
    let second = run_check(&first);
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&first), body(&second));
    assert!(
        first.contains("password_env = \"RMP_TEST_SENTINEL_PW\""),
        "{first}"
    );
    assert!(first.contains("username = \"proxy\""), "{first}");
    for secret in ["very-secret-value", "other-secret"] {
        assert!(!first.contains(secret), "{first}");
    }
}

#[test]
fn check_refuses_a_bad_file_naming_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "backends = [\"a:1\"]\n\n[health]\ninterval = \"fast\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("interval"), "{stderr}");

    let out = bin()
        .args(["check", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn shipped_configs_pass_check() {
    for f in ["config/example.toml", "config/demo.toml"] {
        let out = bin()
            .args(["check", "--config", f])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_PASSWORD", "x")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_with_flags_only_and_status_command() {
    let a = RedisNode::master();
    let b = RedisNode::replica_of(&a);
    // `run --backend … --backend …` with no file is a complete setup.
    let mut child = bin()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--interval",
            "200ms",
            "--timeout",
            "150ms",
        ])
        .args(["--backend", &b.addr(), "--backend", &a.addr()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let admin = line
        .split_whitespace()
        .find_map(|p| p.strip_prefix("admin="))
        .unwrap()
        .to_string();
    let client = line
        .split_whitespace()
        .find_map(|p| p.strip_prefix("client="))
        .unwrap()
        .to_string();
    common::wait_until(std::time::Duration::from_secs(10), "ready", || {
        common::proxy::http_get(&admin, "/readyz").map(|r| r.0) == Ok(200)
    });
    let mut c = common::Client::connect(&client).unwrap();
    assert!(c.cmd_ok(&["SET", "k", "v"]).is_ok());
    let out = bin().args(["status", "--admin", &admin]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains(&format!("master: {}", a.addr())), "{table}");
    assert!(table.contains("replica"), "{table}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn checks_authenticate_with_a_password_from_the_environment() {
    let a = RedisNode::start(&["requirepass env-secret-123"]);
    let toml = config_for(
        &[a.addr()],
        &format!("[auth]\npassword_env = \"RMP_TEST_PW\"\n{FAST_HEALTH}"),
    );
    let proxy = Proxy::start_config(&toml, &[("RMP_TEST_PW", "env-secret-123")]);
    proxy.wait_master(&a.addr());
    // The application authenticates itself through the proxy, as with HAProxy.
    let mut c = proxy.client();
    assert!(c.cmd_ok(&["AUTH", "env-secret-123"]).is_ok());
    assert!(c.cmd_ok(&["SET", "k", "v"]).is_ok());
    for text in [
        proxy.log(),
        proxy.http("/status").1,
        proxy.http("/metrics").1,
    ] {
        assert!(!text.contains("env-secret-123"), "password leaked");
    }
}

#[test]
fn connections_over_the_limit_are_refused_like_redis_does_counted_and_logged_at_a_bounded_rate() {
    let a = RedisNode::master();
    let proxy = Proxy::start(&[a.addr()], "max_connections = 2");
    proxy.wait_master(&a.addr());
    let mut c1 = proxy.client();
    let mut c2 = proxy.client();
    assert!(c1.cmd_ok(&["PING"]).as_str() == Some("PONG"));
    assert!(c2.cmd_ok(&["PING"]).as_str() == Some("PONG"));
    // Over the limit: Redis's own refusal, then the close.
    for _ in 0..5 {
        let mut c3 = proxy.client();
        assert_eq!(
            c3.read_reply(),
            Ok(common::Reply::Error(
                "ERR max number of clients reached".into()
            ))
        );
        assert!(c3.read_reply().is_err(), "closed after the refusal");
    }
    // Logged, but not once per refusal: the first at once, then at most one line per 10 s.
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the refusal logged",
        || proxy.log().contains("clients refused"),
    );
    assert_eq!(
        proxy.log().matches("clients refused").count(),
        1,
        "{}",
        proxy.log()
    );
    assert!(
        proxy
            .metric("redis_master_proxy_connections_refused_total{reason=\"over_limit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    drop(c1);
    common::wait_until(
        std::time::Duration::from_secs(10),
        "a permit to free",
        || proxy.status()["client_connections"].as_u64() == Some(1),
    );
    let mut c4 = proxy.client();
    assert_eq!(c4.cmd_ok(&["PING"]).as_str(), Some("PONG"));
}

/// Starts `run` with `args` and `env`, and collects its stderr lines until one contains
/// `needle` (returned) or 20 s pass (`None`); the process is killed either way.
fn run_until_stderr(args: &[&str], env: &[(&str, &str)], needle: &str) -> (Option<String>, String) {
    run_wrapped_until_stderr(&[], args, env, needle)
}

/// [`run_until_stderr`] under a wrapper command (e.g. `prlimit --nofile=…`).
fn run_wrapped_until_stderr(
    wrapper: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    needle: &str,
) -> (Option<String>, String) {
    use std::io::BufRead;
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(env!("CARGO_BIN_EXE_redis-master-proxy"));
            c
        }
        None => bin(),
    };
    cmd.arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = String::new();
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    found = Some(line);
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (found, seen)
}

/// `warning` is Redis's spelling (`loglevel warning`): it shows warnings, here the down
/// backend, and nothing below them; the same through `RUST_LOG`.
#[test]
fn redis_log_level_spellings_show_warnings() {
    let closed = format!("127.0.0.1:{}", common::free_port());
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--backend",
        &closed,
    ];
    let with_flag: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--log-level", "warning"])
        .collect();
    for (args, env) in [
        (with_flag.as_slice(), &[][..]),
        (&base[..], &[("RUST_LOG", "warning")][..]),
    ] {
        let (found, seen) = run_until_stderr(args, env, "backend down");
        assert!(
            found.is_some(),
            "{args:?} {env:?}: no warning logged:\n{seen}"
        );
        assert!(
            !seen.contains(" INFO "),
            "info lines below warning:\n{seen}"
        );
    }
    // `notice` is Redis's default level: tracing's info.
    let with_notice: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--log-level", "notice"])
        .collect();
    let (found, seen) = run_until_stderr(&with_notice, &[], "redis-master-proxy started");
    assert!(found.is_some(), "notice shows the start line:\n{seen}");
}

#[test]
fn an_unknown_log_level_is_refused() {
    for (args, env, source) in [
        (&["--log-level", "loud"][..], &[][..], "--log-level"),
        (&[][..], &[("RUST_LOG", "warnings")][..], "RUST_LOG"),
    ] {
        let mut cmd = bin();
        cmd.args(["run", "--backend", "127.0.0.1:6379"])
            .args(args)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(source), "{stderr}");
        assert!(stderr.contains("is not a log level"), "{stderr}");
        assert!(
            stderr.contains("warning"),
            "the accepted levels are listed: {stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing printed as listening");
    }
}

#[test]
fn threads_beyond_the_bound_are_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "backends = [\"a:1\"]\nthreads = 100000\n").unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`threads`") && stderr.contains("1024"),
        "{stderr}"
    );
    let out = bin()
        .args(["run", "--backend", "127.0.0.1:6379", "--threads", "100000"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`threads`"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing announced");
}

/// A data-path thread the system refuses (here a 40-process limit for 64 threads) ends the
/// start with an error naming `threads` and exit code 1: no panic, and no `listening` line,
/// since the proxy never was. Root ignores the process limit, so as root the proxy runs as
/// `nobody` (flags only: the binary is the one file it reads).
#[test]
fn a_thread_the_system_refuses_is_a_clean_start_failure() {
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
            "--nproc=40",
            "--",
        ]);
        c
    } else {
        let mut c = Command::new("prlimit");
        c.args(["--nproc=40", "--"]);
        c
    };
    let out = cmd
        .arg(env!("CARGO_BIN_EXE_redis-master-proxy"))
        .args(["run", "--backend", "127.0.0.1:6379", "--threads", "64"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("`threads`"), "{stderr}");
    assert!(stderr.contains("cannot start data-path thread"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing announced as listening: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs `check` with a file (when given) and flags; `(exit code, stdout, stderr)`.
fn check(file: Option<&str>, flags: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.arg("check");
    if let Some(text) = file {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(&path);
    }
    let out = cmd.args(flags).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` refuses what `run` would refuse: the admin listener on the client port.
#[test]
fn check_refuses_admin_on_the_listen_address() {
    for (file, flags) in [
        (
            "backends = [\"a:1\"]\nlisten = \"127.0.0.1:7777\"\nadmin = \"127.0.0.1:7777\"\n",
            &[][..],
        ),
        (
            "backends = [\"a:1\"]\nlisten = \"0.0.0.0:7777\"\n",
            &["--admin", "127.0.0.1:7777"][..],
        ),
    ] {
        let (code, _, stderr) = check(Some(file), flags);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("key `admin`"), "{stderr}");
        assert!(stderr.contains("7777"), "{stderr}");
    }
}

/// A flag is validated exactly like the same key in the file: `--interval 100ms` with the
/// default 500 ms check timeout is refused as `interval = "100ms"` is, naming the flag, by
/// `check` and by `run`; it no longer shrinks the timeout behind the operator's back.
#[test]
fn flags_are_validated_like_the_file() {
    let from_file = check(
        Some("backends = [\"a:1\"]\n[health]\ninterval = \"100ms\"\n"),
        &[],
    );
    let from_flag = check(Some("backends = [\"a:1\"]\n"), &["--interval", "100ms"]);
    let flags_only = check(None, &["--backend", "a:1", "--interval", "100ms"]);
    for (code, _, stderr) in [&from_file, &from_flag, &flags_only] {
        assert_eq!(*code, Some(2), "{stderr}");
        assert!(stderr.contains("key `health.timeout`"), "{stderr}");
        assert!(stderr.contains("500ms"), "{stderr}");
    }
    assert!(from_flag.2.contains("--interval"), "{}", from_flag.2);
    assert!(flags_only.2.contains("<command line>"), "{}", flags_only.2);
    let out = bin()
        .args(["run", "--backend", "a:1", "--interval", "100ms"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("key `health.timeout`") && stderr.contains("--interval"));
    // With a timeout below it, by flag or in the file, the same interval is accepted.
    let (code, stdout, stderr) = check(
        None,
        &[
            "--backend",
            "a:1",
            "--interval",
            "100ms",
            "--timeout",
            "80ms",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("timeout = \"80ms\""), "{stdout}");
}

/// The default `max_connections` is what the descriptor limit holds: under the 20,000 limit
/// of the machine the proxy starts without the descriptor warning, and `check` shows
/// the derived value (718 under a 2,000 limit: 2,000 less a reserve of 564, two per session).
#[test]
fn the_default_max_connections_fits_the_descriptor_limit_without_a_warning() {
    let out = Command::new("prlimit")
        .args(["--nofile=2000:2000", "--"])
        .arg(env!("CARGO_BIN_EXE_redis-master-proxy"))
        .args(["check", "--backend", "a:1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("max_connections = 718"), "{stdout}");

    let closed = format!("127.0.0.1:{}", common::free_port());
    let (found, seen) = run_wrapped_until_stderr(
        &["prlimit", "--nofile=20000:20000", "--"],
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--backend",
            &closed,
        ],
        &[],
        "redis-master-proxy started",
    );
    assert!(found.is_some(), "{seen}");
    assert!(!seen.contains("descriptor limit"), "{seen}");
    // An explicit value that does not fit is still warned about.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("backends = [\"{closed}\"]\nmax_connections = 10000\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n")).unwrap();
    let cfg = cfg.display().to_string();
    let (found, seen) = run_wrapped_until_stderr(
        &["prlimit", "--nofile=20000:20000", "--"],
        &["--config", &cfg],
        &[],
        "redis-master-proxy started",
    );
    assert!(found.is_some(), "{seen}");
    assert!(seen.contains("descriptor limit cannot hold"), "{seen}");
}
