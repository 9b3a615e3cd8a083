//! The real `redis-master-proxy` binary as a child process, for integration tests.
//!
//! Started with a config file in its own temp dir and `listen`/`admin` on port 0; the ports are
//! read from the one line the binary prints on stdout. Stderr (the log) goes to a file that is
//! printed when the test panics. Drop kills the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{wait_until, Client};

/// Generous bound for the proxy to follow a change in tests; the assertions are about the
/// outcome, never about how fast it came.
pub const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);

/// A running proxy.
pub struct Proxy {
    child: Option<Child>,
    /// Client address (`127.0.0.1:PORT`).
    pub addr: String,
    /// Admin address (`127.0.0.1:PORT`).
    pub admin: String,
    dir: TempDir,
    config_path: PathBuf,
}

/// A minimal config for tests: fast checks so failovers are followed quickly.
pub fn config_for(backends: &[String], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// The default `[health]` of tests: 200 ms rounds so tests run fast.
pub const FAST_HEALTH: &str =
    "[health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n";

impl Proxy {
    /// Starts the proxy in front of `backends` with test-speed checks and `extra` TOML (top-level
    /// keys first, then tables).
    pub fn start(backends: &[String], extra: &str) -> Proxy {
        let has_health = extra.contains("[health]");
        let body = if has_health {
            config_for(backends, extra)
        } else {
            config_for(backends, &format!("{extra}\n{FAST_HEALTH}"))
        };
        Proxy::start_config(&body, &[])
    }

    /// Starts the proxy with a full config text and extra environment variables.
    pub fn start_config(toml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::start_wrapped(toml, env, &[])
    }

    /// Like [`Proxy::start_config`], run under a wrapper command (e.g. `prlimit --nofile=64`).
    pub fn start_wrapped(toml: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Proxy {
        let dir = tempfile::Builder::new()
            .prefix("rmp-proxy-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, toml).expect("write config");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log file");
        let bin = env!("CARGO_BIN_EXE_redis-master-proxy");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--log-level")
            .arg("debug")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn redis-master-proxy");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut p = Proxy {
            child: Some(child),
            addr: String::new(),
            admin: String::new(),
            dir,
            config_path,
        };
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.starts_with("listening ") => l,
            other => panic!("proxy did not start ({other:?}); log:\n{}", p.log()),
        };
        for part in line.split_whitespace() {
            if let Some(a) = part.strip_prefix("client=") {
                p.addr = a.to_string();
            } else if let Some(a) = part.strip_prefix("admin=") {
                p.admin = a.to_string();
            }
        }
        p
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Resident memory of the proxy process, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// CPU time (user + system) the proxy has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf with a valid name has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Open file descriptors of the proxy process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A new client connection through the proxy.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr).unwrap_or_else(|e| panic!("connect to proxy: {e}"))
    }

    /// `GET path` on the admin listener: `(status code, body)`.
    pub fn http(&self, path: &str) -> (u16, String) {
        http_get(&self.admin, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.http("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// The backend the proxy routes to now (`None`: no route).
    pub fn master(&self) -> Option<String> {
        self.status()["master"]["backend"]
            .as_str()
            .map(str::to_string)
    }

    /// Waits until the proxy routes to `backend`.
    pub fn wait_master(&self, backend: &str) {
        wait_until(
            FOLLOW_TIMEOUT,
            &format!("proxy to route to {backend}"),
            || self.master().as_deref() == Some(backend),
        );
    }

    /// Waits until the proxy is subscribed to `n` sentinels' events.
    pub fn wait_subscribed(&self, n: usize) {
        wait_until(
            FOLLOW_TIMEOUT,
            "proxy to subscribe to the sentinels",
            || {
                self.log()
                    .matches("subscribed to sentinel failover events")
                    .count()
                    >= n
            },
        );
    }

    /// Check rounds the proxy has run so far.
    pub fn check_rounds(&self) -> u64 {
        self.status()["check_rounds"].as_u64().unwrap_or(0)
    }

    /// Waits until `n` more check rounds have started: by then the proxy has acted on the
    /// results of at least `n - 1` rounds checked after this call.
    pub fn wait_rounds(&self, n: u64) {
        let start = self.check_rounds();
        wait_until(FOLLOW_TIMEOUT, &format!("{n} more check rounds"), || {
            self.check_rounds() >= start + n
        });
    }

    /// Asserts that the route stays on `backend` over the next `n` check rounds, looking after
    /// each one.
    pub fn stays_on(&self, backend: &str, n: u64) {
        for _ in 0..n {
            self.wait_rounds(1);
            assert_eq!(
                self.master().as_deref(),
                Some(backend),
                "the route left {backend}"
            );
        }
    }

    /// Client connections open now (sessions, and clients still waiting for a master).
    pub fn client_connections(&self) -> u64 {
        self.status()["client_connections"].as_u64().unwrap_or(0)
    }

    /// Waits until the proxy has no route.
    pub fn wait_no_master(&self) {
        wait_until(FOLLOW_TIMEOUT, "proxy to withdraw the route", || {
            self.master().is_none()
        });
    }

    /// The value of a metric line (exact name with labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http("/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("proxy did not exit after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // RMP_TEST_PRINT_LOG=1 prints the log of passing tests too.
        if std::thread::panicking() || std::env::var_os("RMP_TEST_PRINT_LOG").is_some() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- proxy log (last 80 lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A plain HTTP/1.1 GET: `(status code, body)`.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {resp:?}"))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
