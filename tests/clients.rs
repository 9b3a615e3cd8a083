//! The client libraries our users run, through `mode = "multiplex"` in front of a real
//! `redis-server`: redis-py the way Celery uses it (pipelines, WATCH/MULTI transactions, `BRPOP`
//! workers, results by pub/sub) and ioredis the way BullMQ does (scripts by `defineCommand`,
//! `BRPOPLPUSH`/`BLMOVE` workers while another connection pushes, pub/sub, `MULTI`). The
//! scripts in `tests/clients/` fail when a reply is not the one its command expects (every value
//! carries its client's and command's number, so a reply routed to another client never
//! matches), a blocking command misbehaves, or a job or message is lost or duplicated.
//!
//! Each library runs in RESP2 and in RESP3 (its default: redis-py 8 and ioredis 6 send `HELLO 3`
//! as they connect); in both, plain commands share the proxy's master connections of that
//! protocol (the test checks they did). The libraries are installed by
//! `scripts/install-deps.sh --clients` (which `scripts/test.sh` runs), never by a test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::RedisNode;

/// A script that has not finished by then is stuck: it is killed and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The installed tool, or a panic that says how to install it.
fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `scripts/install-deps.sh --clients` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    installed(clients_dir().join(".venv/bin/python"))
}

fn node_modules() -> PathBuf {
    installed(clients_dir().join("node_modules/ioredis5"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `program args` to completion; panics with its output when it fails or hangs.
fn run(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => stdout,
        Some(s) => panic!("{args:?} failed ({s}):\n{stdout}\n{stderr}"),
        None => panic!("{args:?} still running after {SCRIPT_TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
}

fn metric(proxy: &Proxy, name: &str) -> f64 {
    proxy
        .metric(&format!("redis_master_proxy_multiplex_{name}"))
        .unwrap_or(0.0)
}

fn multiplex(master: &RedisNode) -> Proxy {
    // Two data-path threads and placement by connection: the clients of one script (one host)
    // land on both threads, each with its shared connections.
    let proxy = Proxy::start(
        &[master.addr()],
        "mode = \"multiplex\"\nthreads = 2\nplacement = \"connection\"",
    );
    proxy.wait_master(&master.addr());
    proxy
}

/// What a run's plain commands do through multiplex mode.
enum Expect {
    /// RESP2: they share the RESP2 master connections; at least this many of them.
    Shares(f64),
    /// RESP3 (`HELLO 3` first): they share the RESP3 master connections; at least this many.
    SharesResp3(f64),
}

/// Runs `script` once per `(args, expect)` against one proxy, and checks where the commands
/// went; no command may be answered with the proxy's error.
fn check_library(script: &[&str], runs: &[(&[&str], Expect)], env: &[(&str, &Path)]) {
    let master = RedisNode::master();
    let proxy = multiplex(&master);
    let program = if script[0].ends_with(".py") {
        python()
    } else {
        PathBuf::from("node")
    };
    let addr = proxy.addr.clone();
    for (extra, expect) in runs {
        let mut args: Vec<&str> = script.to_vec();
        args.extend(["--addr", &addr]);
        args.extend(*extra);
        let (shared, resp3, pinned) = (
            metric(&proxy, "commands_total"),
            metric(&proxy, "resp3_commands_total"),
            metric(&proxy, "pinned_total"),
        );
        let out = run(&program, &args, env);
        let shared = metric(&proxy, "commands_total") - shared;
        let resp3 = metric(&proxy, "resp3_commands_total") - resp3;
        match expect {
            Expect::Shares(at_least) => {
                assert!(
                    shared >= *at_least,
                    "{args:?}: {shared} commands shared, want {at_least} or more:\n{out}"
                );
                assert_eq!(resp3, 0.0, "{args:?}: RESP2 clients stay on RESP2:\n{out}");
            }
            Expect::SharesResp3(at_least) => assert!(
                resp3 >= *at_least,
                "{args:?}: {resp3} commands shared in RESP3, want {at_least} or more:\n{out}"
            ),
        }
        assert!(
            metric(&proxy, "pinned_total") > pinned,
            "{args:?}: blocking commands and subscriptions pin"
        );
    }
    assert_eq!(
        proxy
            .metric("redis_master_proxy_multiplex_errors_total{reason=\"lost\"}")
            .unwrap_or(0.0),
        0.0
    );
}

/// redis-py 8 (RESP3 by default), Celery's patterns.
#[test]
fn redis_py_celery_patterns_get_their_own_replies_through_multiplex() {
    // The pipelines alone send 16 clients x 20 rounds x 251 commands.
    check_library(
        &["redis_py_mux.py"],
        &[
            (&["--protocol", "2"], Expect::Shares(16.0 * 20.0 * 251.0)),
            (
                &["--protocol", "3"],
                Expect::SharesResp3(16.0 * 20.0 * 251.0),
            ),
        ],
        &[],
    );
}

/// ioredis 5 (RESP2 only, BullMQ 5's) and 6 (RESP3 by default), BullMQ's patterns.
#[test]
fn ioredis_bullmq_patterns_get_their_own_replies_through_multiplex() {
    let modules = node_modules();
    // The pipelines alone send 20 clients x 20 rounds x 220 commands.
    let shares = 20.0 * 20.0 * 220.0;
    check_library(
        &["ioredis_mux.js"],
        &[
            (&["--lib", "ioredis5"], Expect::Shares(shares)),
            (
                &["--lib", "ioredis", "--protocol", "2"],
                Expect::Shares(shares),
            ),
            (&["--lib", "ioredis"], Expect::SharesResp3(shares)),
        ],
        &[("NODE_PATH", &modules)],
    );
}
