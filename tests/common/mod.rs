//! Shared integration-test harness: real `redis-server` and `redis-sentinel` processes.
//!
//! What every test using this module can rely on:
//!
//! * **Loopback only.** Every process is bound to `127.0.0.1`; nothing listens on other
//!   interfaces and every address handed out is `127.0.0.1:PORT`.
//! * **Free ports.** Ports come from the kernel ([`free_port`]); when a process still loses the
//!   race for its port (another test took it in between), it is started again on a new port,
//!   a bounded number of times. No test uses a fixed port.
//! * **Own temp dir.** Each process gets a fresh directory for its config file, log and data;
//!   nothing is shared between processes or tests, so tests can run in parallel.
//! * **Ready means ready.** A constructor returns only once the process answers (and a replica
//!   once its replication link is up); every wait polls a condition with a deadline
//!   ([`wait_until`]) instead of sleeping for a fixed time.
//! * **Everything stopped on drop.** Dropping a [`RedisNode`] or [`Sentinels`] resumes a paused
//!   process, kills it and reaps it. On Linux the processes are also told to die with the test
//!   binary, so an aborted or killed test run does not leave servers behind.
//! * **Logs kept on failure.** When a test panics, each process prints the end of its log to
//!   stderr while it is being dropped. Set `REDIS_HARNESS_KEEP_DIRS=1` to keep the whole
//!   directories (their paths are printed).
//!
//! The binaries come from `PATH` (Debian: `apt-get install redis-server redis-sentinel`); if
//! they are missing the harness panics with that hint instead of skipping the test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod fake_sentinel;
pub mod inproc;
pub mod proxy;
pub mod sentinel_wire;

/// How long a freshly spawned process may take to answer PING; generous because the test
/// machine is shared and small.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replica may take to bring its replication link up (connect, full sync).
pub const LINK_TIMEOUT: Duration = Duration::from_secs(20);

/// How long sentinels may take to discover the replicas and each other (hello messages are
/// sent every 2 s, replica INFO every 10 s).
pub const SENTINEL_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many fresh ports a process is tried on before the harness gives up.
const MAX_PORT_ATTEMPTS: usize = 5;

/// Interval between two checks of a condition in [`wait_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Default read/write timeout of a [`Client`], so a test never blocks forever on a dead peer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the kernel for a currently free loopback port (bind to port 0, read it, release it).
///
/// The port is free at the moment of the call only: another process may take it before ours
/// binds it. The process starters in this module detect that and retry on another port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local address of the free-port listener")
        .port()
}

/// Polls `f` every ~20 ms until it returns true; panics with `what` after `timeout`.
///
/// This is the only way the harness (and the tests) should wait: on a condition, with a
/// deadline, never with a fixed sleep.
pub fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut f: F) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`], for a condition that produces a value: polls `f` until it returns
/// `Some`, and returns that value; panics with `what` after `timeout`.
pub fn wait_for<T, F: FnMut() -> Option<T>>(timeout: Duration, what: &str, mut f: F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// RESP2 client
// ---------------------------------------------------------------------------------------------

/// One RESP2 reply, as read by [`Client`].
///
/// Server errors are a `Reply::Error`, not an `Err`: `Err` in this module always means the
/// transport failed (refused, timed out, closed). A null array (`*-1`) is read as
/// `Bulk(None)`, since both mean "nil" in RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style simple string.
    Status(String),
    /// `-ERR ...` error reply (the text without the leading `-`).
    Error(String),
    /// `:123` integer.
    Int(i64),
    /// `$n` bulk string; `None` for the nil bulk (and the nil array).
    Bulk(Option<Vec<u8>>),
    /// `*n` array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a status or (UTF-8) bulk reply; `None` for anything else.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Status(s) => Some(s),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Owned version of [`Reply::as_str`].
    pub fn as_string(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }

    /// The value of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The raw bytes of a non-nil bulk reply.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array reply.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// True for `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Status(s) if s == "OK")
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// True for nil (`$-1` or `*-1`).
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None))
    }

    /// A flat `[k1, v1, k2, v2, ...]` array (as Sentinel and CONFIG GET return) as a map.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        if let Some(items) = self.as_array() {
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        map.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        map
    }
}

impl fmt::Display for Reply {
    /// Human-readable form for assertion messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Encodes a command as a RESP2 array of bulk strings, for pipelines built by hand with
/// [`Client::send_raw`].
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Turns an I/O error into the harness's transport error text; the text starts with
/// "timed out" or "connection closed" for those two cases so tests can tell them apart.
fn io_error(context: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("timed out: {context}"),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => format!("connection closed: {context}: {e}"),
        _ => format!("{context}: {e}"),
    }
}

/// Reads one RESP2 reply (recursively for arrays).
fn read_resp(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .map_err(|e| io_error("reading a reply", e))?;
    if n == 0 {
        return Err("connection closed by peer".to_owned());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "connection closed mid-reply (partial line {:?})",
            String::from_utf8_lossy(&line)
        ));
    }
    line.truncate(line.len() - 2);
    if line.is_empty() {
        return Err("protocol error: empty reply line".to_owned());
    }
    let text = String::from_utf8_lossy(&line[1..]).into_owned();
    let parse_len = |t: &str| -> Result<i64, String> {
        t.parse::<i64>()
            .map_err(|_| format!("protocol error: bad length {t:?}"))
    };
    match line[0] {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => Ok(Reply::Int(parse_len(&text)?)),
        b'$' => {
            let len = parse_len(&text)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; len as usize + 2];
            r.read_exact(&mut buf)
                .map_err(|e| io_error("reading a bulk string", e))?;
            if !buf.ends_with(b"\r\n") {
                return Err("protocol error: bulk string not terminated by CRLF".to_owned());
            }
            buf.truncate(len as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        b'*' => {
            let len = parse_len(&text)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut items = Vec::with_capacity(len.min(1024) as usize);
            for _ in 0..len {
                items.push(read_resp(r)?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(format!(
            "protocol error: unexpected reply type byte {:?} in {:?}",
            other as char,
            String::from_utf8_lossy(&line)
        )),
    }
}

/// A tiny blocking RESP2 client over `std::net::TcpStream`.
///
/// It exists so tests can talk to Redis, Sentinel and the proxy without an async runtime and
/// without a client library hiding what goes over the wire (reconnects, pipelining, auth).
/// Every read and write has a timeout (5 s unless [`Client::set_timeout`] says otherwise).
pub struct Client {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `addr` ("127.0.0.1:PORT") with a 2 s connect timeout.
    pub fn connect(addr: &str) -> Result<Client, String> {
        Self::connect_timeout(addr, Duration::from_secs(2))
    }

    /// Connects to `addr` with the given connect timeout.
    pub fn connect_timeout(addr: &str, timeout: Duration) -> Result<Client, String> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("address {addr} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)
            .map_err(|e| io_error(&format!("connect to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        let writer = stream
            .try_clone()
            .map_err(|e| format!("clone socket to {addr}: {e}"))?;
        let mut client = Client {
            addr: addr.to_owned(),
            reader: BufReader::new(stream),
            writer,
        };
        client.set_timeout(Some(CLIENT_TIMEOUT));
        Ok(client)
    }

    /// Connects and authenticates with `AUTH password` when a password is given.
    pub fn connect_auth(addr: &str, password: Option<&str>) -> Result<Client, String> {
        let mut client = Self::connect(addr)?;
        if let Some(pw) = password {
            match client.cmd(&["AUTH", pw])? {
                r if r.is_ok() => {}
                other => return Err(format!("AUTH on {addr} failed: {other}")),
            }
        }
        Ok(client)
    }

    /// The address this client connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets the read and write timeout (`None` blocks forever; avoid that in tests).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        let _ = self.writer.set_read_timeout(timeout);
        let _ = self.writer.set_write_timeout(timeout);
    }

    /// Sends one command and reads its reply. Server errors come back as `Ok(Reply::Error)`;
    /// `Err` means the transport failed.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply, String> {
        self.send_raw(&encode_command(args))?;
        self.read_reply()
    }

    /// Like [`Client::cmd`] with binary arguments.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.send_raw(&encode_command(args))?;
        self.read_reply()
    }

    /// Sends a command and panics unless it succeeds with a non-error reply; for test steps
    /// that are not what the test is about.
    pub fn cmd_ok(&mut self, args: &[&str]) -> Reply {
        match self.cmd(args) {
            Ok(Reply::Error(e)) => panic!("{} on {}: error reply -{e}", args.join(" "), self.addr),
            Ok(r) => r,
            Err(e) => panic!("{} on {}: {e}", args.join(" "), self.addr),
        }
    }

    /// Writes raw bytes (e.g. several encoded commands for a pipeline, or malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(bytes)
            .and_then(|_| self.writer.flush())
            .map_err(|e| io_error(&format!("write to {}", self.addr), e))
    }

    /// Reads the next reply (one per command sent with [`Client::send_raw`]).
    pub fn read_reply(&mut self) -> Result<Reply, String> {
        read_resp(&mut self.reader).map_err(|e| format!("{e} (from {})", self.addr))
    }

    /// Closes the write half, as a client that is done sending would.
    pub fn shutdown_write(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Write);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Finds `name` on PATH, or panics with how to install it: a test that cannot run its
/// backends must fail loudly, never skip.
fn find_binary(name: &str) -> PathBuf {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
        return p.clone();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    match found {
        Some(p) => {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), p.clone());
            p
        }
        None => panic!(
            "`{name}` is not on PATH; these integration tests need real Redis processes. \
             Install them with: apt-get install redis-server redis-sentinel"
        ),
    }
}

/// What the spawner thread needs to start one process.
struct SpawnRequest {
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    output: PathBuf,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns every process from one long-lived thread.
///
/// On Linux each child asks for SIGKILL when the thread that forked it dies
/// (PR_SET_PDEATHSIG). That "parent" must therefore be a thread that lives as long as the test
/// binary, not the test thread (which may end while the node is still owned elsewhere).
fn spawn_process(program: &Path, args: Vec<OsString>, dir: &Path, output: &Path) -> Child {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("redis-harness-spawner".to_owned())
            .spawn(move || {
                for req in rx {
                    let _ = req.reply.send(spawn_now(&req));
                }
            })
            .expect("start the process spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send(SpawnRequest {
        program: program.to_owned(),
        args,
        dir: dir.to_owned(),
        output: output.to_owned(),
        reply: reply_tx,
    })
    .expect("spawner thread is gone");
    reply_rx
        .recv()
        .expect("spawner thread dropped the request")
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

/// Runs on the spawner thread: the actual fork/exec.
fn spawn_now(req: &SpawnRequest) -> io::Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&req.output)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&req.program);
    cmd.args(&req.args)
        .current_dir(&req.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Sends a signal to a process we own.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Last `n` lines of a file, or a note that it cannot be read.
fn tail_file(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Why a spawned process did not come up.
enum StartError {
    /// It exited because its port was taken: retry on another port.
    PortInUse,
    /// Anything else: the message says what, with the log.
    Failed(String),
}

/// One `redis-server` or `redis-sentinel` process with its own temp dir, config file and log.
///
/// Holds everything shared by nodes and sentinels: start with port-race retries, readiness
/// check, signals, and the stop-on-drop / log-on-failure guarantees.
struct ServerProcess {
    /// "redis-server" or "redis-sentinel", for messages.
    kind: &'static str,
    program: PathBuf,
    dir: Option<TempDir>,
    dir_path: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    output: PathBuf,
    port: u16,
    password: Option<String>,
    child: Option<Child>,
    paused: bool,
    /// Set when a panic message already carries the log, so Drop does not print it twice.
    log_reported: bool,
}

impl ServerProcess {
    /// Creates the temp dir, writes the config from `make_conf(port, dir)` and starts the
    /// process, retrying on a new port when the chosen one turns out to be taken.
    fn launch(
        kind: &'static str,
        log_name: &str,
        password: Option<String>,
        make_conf: impl Fn(u16, &Path, &Path) -> String,
    ) -> ServerProcess {
        let program = find_binary(kind);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{kind}-"))
            .tempdir()
            .expect("create a temp dir");
        let dir_path = dir.path().to_owned();
        let conf = dir_path.join(format!("{kind}.conf"));
        let log = dir_path.join(log_name);
        let output = dir_path.join("stdout.log");
        let mut p = ServerProcess {
            kind,
            program,
            dir: Some(dir),
            dir_path,
            conf,
            log,
            output,
            port: 0,
            password,
            child: None,
            paused: false,
            log_reported: false,
        };
        let mut last_port = 0;
        for _ in 0..MAX_PORT_ATTEMPTS {
            p.port = free_port();
            last_port = p.port;
            let text = make_conf(p.port, &p.dir_path, &p.log);
            fs::write(&p.conf, text).expect("write the config file");
            let _ = fs::remove_file(&p.log);
            match p.spawn_and_wait() {
                Ok(()) => return p,
                Err(StartError::PortInUse) => continue,
                Err(StartError::Failed(msg)) => {
                    p.log_reported = true;
                    panic!("{msg}")
                }
            }
        }
        panic!(
            "{kind}: port taken by someone else on {MAX_PORT_ATTEMPTS} attempts (last {last_port})"
        );
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} {} is not running", self.kind, self.addr()))
            .id()
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process from the config file as it is now and waits until it answers.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        assert!(
            self.child.is_none(),
            "{} {} is already running",
            self.kind,
            self.addr()
        );
        let child = spawn_process(
            &self.program,
            vec![self.conf.clone().into_os_string()],
            &self.dir_path,
            &self.output,
        );
        self.child = Some(child);
        self.paused = false;
        self.wait_answering()
    }

    /// Waits until the process answers PING and INFO names *our* pid (so a process of another
    /// test that grabbed the same port is not mistaken for ours).
    fn wait_answering(&mut self) -> Result<(), StartError> {
        let addr = self.addr();
        let deadline = Instant::now() + START_TIMEOUT;
        let expected_pid = format!("process_id:{}", self.pid());
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = tail_file(&self.log, 50);
                let out = tail_file(&self.output, 20);
                if log.contains("Address already in use") || out.contains("Address already in use")
                {
                    return Err(StartError::PortInUse);
                }
                return Err(StartError::Failed(format!(
                    "{} on {addr} exited during start ({status}).\n--- {} ---\n{log}\n--- stdout/stderr ---\n{out}",
                    self.kind,
                    self.log.display()
                )));
            }
            if self.probe(&addr, &expected_pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = tail_file(&self.log, 50);
                self.kill();
                return Err(StartError::Failed(format!(
                    "{} on {addr} did not answer PING within {START_TIMEOUT:?}.\n--- {} ---\n{log}",
                    self.kind,
                    self.log.display()
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// One readiness probe with short timeouts: AUTH if needed, PING, and INFO naming our pid.
    fn probe(&self, addr: &str, expected_pid: &str) -> bool {
        let Ok(mut c) = Client::connect_timeout(addr, Duration::from_millis(250)) else {
            return false;
        };
        c.set_timeout(Some(Duration::from_millis(250)));
        if let Some(pw) = &self.password {
            if !c.cmd(&["AUTH", pw]).is_ok_and(|r| r.is_ok()) {
                return false;
            }
        }
        let pong = matches!(c.cmd(&["PING"]), Ok(Reply::Status(ref s)) if s == "PONG");
        pong && c
            .cmd(&["INFO", "server"])
            .is_ok_and(|info| info.as_str().is_some_and(|s| s.contains(expected_pid)))
    }

    /// Starts the process again on the same port and dir (after [`ServerProcess::kill`]).
    fn restart(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        match self.spawn_and_wait() {
            Ok(()) => {}
            Err(StartError::PortInUse) => panic!(
                "{} cannot restart on {}: the port was taken by another process meanwhile",
                self.kind,
                self.addr()
            ),
            Err(StartError::Failed(msg)) => {
                self.log_reported = true;
                panic!("restart: {msg}")
            }
        }
    }

    /// SIGCONT (a stopped process must run to die cleanly), SIGKILL, reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM and wait up to 5 s for a clean exit, then SIGKILL.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGCONT);
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.paused = false;
    }

    fn pause(&mut self) {
        signal(self.pid(), libc::SIGSTOP);
        self.paused = true;
    }

    fn resume(&mut self) {
        signal(self.pid(), libc::SIGCONT);
        self.paused = false;
    }

    fn log_tail(&self, n: usize) -> String {
        tail_file(&self.log, n)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if thread::panicking() && !self.log_reported {
            eprintln!(
                "----- last 50 lines of {} {} log ({}) -----\n{}\n----- end of log -----",
                self.kind,
                self.addr(),
                self.log.display(),
                tail_file(&self.log, 50)
            );
            let out = tail_file(&self.output, 20);
            if !out.trim().is_empty() && fs::metadata(&self.output).is_ok() {
                eprintln!(
                    "----- {} {} stdout/stderr -----\n{out}",
                    self.kind,
                    self.addr()
                );
            }
        }
        self.kill();
        if std::env::var_os("REDIS_HARNESS_KEEP_DIRS").is_some_and(|v| v != "0") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("kept {} {} dir: {}", self.kind, self.addr(), kept.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis nodes
// ---------------------------------------------------------------------------------------------

/// A real `redis-server` on a free loopback port, in its own temp dir.
///
/// It exists so tests exercise the proxy against actual replication, failover and crashes
/// rather than a mock. The config is written to `<dir>/redis-server.conf` (so `CONFIG REWRITE`,
/// which Sentinel uses, works) and tuned for fast, deterministic failover tests: no
/// persistence, diskless sync without delay, replica pings every second, short replication
/// timeout.
pub struct RedisNode {
    proc_: ServerProcess,
}

/// Settings every node gets; extra lines given to [`RedisNode::start`] come after them and
/// therefore win.
fn redis_conf(port: u16, dir: &Path, log: &Path, extra: &[String]) -> String {
    let mut conf = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir {dir}\n\
         logfile {log}\n\
         loglevel notice\n\
         save \"\"\n\
         appendonly no\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n\
         repl-ping-replica-period 1\n\
         repl-timeout 5\n\
         enable-debug-command local\n",
        dir = dir.display(),
        log = log.display(),
    );
    for line in extra {
        conf.push_str(line);
        conf.push('\n');
    }
    conf
}

/// The value of the first `directive value` line in `lines`, if any.
fn config_value(lines: &[String], directive: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let mut parts = l.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(d), Some(v)) if d.eq_ignore_ascii_case(directive) => {
                Some(v.trim_matches('"').to_owned())
            }
            _ => None,
        }
    })
}

/// Normalizes "slave" (what Redis reports) to "replica" (what the proxy reports).
fn normalize_role(role: &str) -> String {
    match role {
        "slave" => "replica".to_owned(),
        other => other.to_owned(),
    }
}

impl RedisNode {
    /// Starts a master with the default settings.
    pub fn master() -> RedisNode {
        Self::start(&[])
    }

    /// Starts a replica of `master` and waits until its replication link is up. If the master
    /// has a password, the replica gets the same `requirepass` and `masterauth`.
    pub fn replica_of(master: &RedisNode) -> RedisNode {
        Self::start_replica_of(master, &[])
    }

    /// Like [`RedisNode::replica_of`] with extra config lines.
    pub fn start_replica_of(master: &RedisNode, extra_config_lines: &[&str]) -> RedisNode {
        let mut lines = vec![format!("replicaof 127.0.0.1 {}", master.port())];
        if let Some(pw) = master.password() {
            lines.push(format!("requirepass {pw}"));
            lines.push(format!("masterauth {pw}"));
        }
        lines.extend(extra_config_lines.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        Self::start(&refs)
    }

    /// Starts a node with extra config lines (e.g. `"requirepass s3cret"`), appended after
    /// the defaults. With `requirepass` the harness authenticates its own connections and
    /// adds the same `masterauth` (so the node can follow a new master after a failover).
    /// With `replicaof`, it waits until the replication link is up.
    pub fn start(extra_config_lines: &[&str]) -> RedisNode {
        let mut extra: Vec<String> = extra_config_lines.iter().map(|s| s.to_string()).collect();
        let password = config_value(&extra, "requirepass");
        if let Some(pw) = &password {
            if config_value(&extra, "masterauth").is_none() {
                extra.push(format!("masterauth {pw}"));
            }
        }
        let is_replica = config_value(&extra, "replicaof").is_some()
            || config_value(&extra, "slaveof").is_some();
        let proc_ =
            ServerProcess::launch("redis-server", "redis.log", password, |port, dir, log| {
                redis_conf(port, dir, log, &extra)
            });
        let node = RedisNode { proc_ };
        if is_replica {
            node.wait_link_up(LINK_TIMEOUT);
        }
        node
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.proc_.addr()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.proc_.port
    }

    /// The pid of the running process (panics if it was killed).
    pub fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    /// The `requirepass` the node was started with.
    pub fn password(&self) -> Option<&str> {
        self.proc_.password.as_deref()
    }

    /// The node's temp dir (config, log, data).
    pub fn dir(&self) -> &Path {
        &self.proc_.dir_path
    }

    /// The node's log file.
    pub fn log_path(&self) -> &Path {
        &self.proc_.log
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.proc_.log_tail(n)
    }

    /// Whether the process is running (not killed); a paused process counts as running.
    pub fn is_running(&self) -> bool {
        self.proc_.is_running()
    }

    /// Whether the process is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.proc_.paused
    }

    /// SIGKILL and reap: a crash, no chance to say goodbye to clients or replicas.
    pub fn kill(&mut self) {
        self.proc_.kill();
    }

    /// SIGSTOP: the node hangs (connections stay open, nothing answers), like a frozen VM.
    pub fn pause(&mut self) {
        self.proc_.pause();
    }

    /// SIGCONT after [`RedisNode::pause`].
    pub fn resume(&mut self) {
        self.proc_.resume();
    }

    /// Starts the node again on the same port and dir after [`RedisNode::kill`] (kills it
    /// first if it still runs), from its config file as it is now (which Sentinel may have
    /// rewritten). Waits until it answers PING; data is gone (no persistence).
    pub fn restart(&mut self) {
        self.proc_.restart();
    }

    /// Kills the node and starts it again from its own data without `replicaof`, the way a
    /// pod whose init step failed to write it comes back: it saves its dataset first (with the
    /// replication id and offset a replica stores in its RDB), so it boots as a master out of
    /// its old master's history.
    pub fn restart_standalone(&mut self) {
        self.cmd_ok(&["SAVE"]);
        self.proc_.kill();
        let conf = fs::read_to_string(&self.proc_.conf).expect("read the config");
        let kept: Vec<&str> = conf
            .lines()
            .filter(|l| {
                let d = l
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                d != "replicaof" && d != "slaveof"
            })
            .collect();
        fs::write(&self.proc_.conf, kept.join("\n") + "\n").expect("write the config");
        self.proc_.restart();
    }

    /// A new authenticated connection to this node.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect_auth(&self.addr(), self.password())
    }

    /// Sends one command on a fresh connection. `Err` means the transport failed; server
    /// errors are `Ok(Reply::Error)`.
    pub fn cmd(&self, args: &[&str]) -> Result<Reply, String> {
        self.client()?.cmd(args)
    }

    /// Sends one command and panics unless it gets a non-error reply.
    pub fn cmd_ok(&self, args: &[&str]) -> Reply {
        match self.cmd(args) {
            Ok(Reply::Error(e)) => panic!("{} on {}: -{e}", args.join(" "), self.addr()),
            Ok(r) => r,
            Err(e) => panic!("{} on {}: {e}", args.join(" "), self.addr()),
        }
    }

    /// `INFO <section>` as a map, or the transport/server error.
    pub fn try_info(&self, section: &str) -> Result<HashMap<String, String>, String> {
        match self.cmd(&["INFO", section])? {
            Reply::Bulk(Some(b)) => Ok(parse_info(&String::from_utf8_lossy(&b))),
            other => Err(format!("INFO {section} on {}: {other}", self.addr())),
        }
    }

    /// `INFO <section>` as a map; panics if the node does not answer.
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        self.try_info(section)
            .unwrap_or_else(|e| panic!("INFO {section} on {}: {e}", self.addr()))
    }

    /// `INFO replication` as a map (role, master_link_status, master_repl_offset, ...).
    pub fn info_replication(&self) -> HashMap<String, String> {
        self.info("replication")
    }

    /// "master" or "replica" (Redis's "slave" is normalized).
    pub fn role(&self) -> String {
        let info = self.info_replication();
        normalize_role(info.get("role").map(String::as_str).unwrap_or("unknown"))
    }

    /// The role if the node answers, `None` otherwise.
    pub fn try_role(&self) -> Option<String> {
        self.try_info("replication")
            .ok()
            .and_then(|i| i.get("role").map(|r| normalize_role(r)))
    }

    /// Waits until the node reports `role` ("master", "replica" or "slave").
    pub fn wait_for_role(&self, role: &str, timeout: Duration) {
        let want = normalize_role(role);
        wait_until(
            timeout,
            &format!("{} to have role {want}", self.addr()),
            || self.try_role().as_deref() == Some(want.as_str()),
        );
    }

    /// Waits until this replica's `master_link_status` is `up`.
    pub fn wait_link_up(&self, timeout: Duration) {
        let what = format!("{} master_link_status:up", self.addr());
        wait_until(timeout, &what, || {
            self.try_info("replication")
                .ok()
                .is_some_and(|i| i.get("master_link_status").map(String::as_str) == Some("up"))
        });
    }

    /// `master_repl_offset` from INFO replication.
    pub fn repl_offset(&self) -> i64 {
        self.info_replication()
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no master_repl_offset on {}", self.addr()))
    }

    /// Waits until this replica has processed everything `master` has written so far.
    pub fn wait_synced_with(&self, master: &RedisNode, timeout: Duration) {
        let target = master.repl_offset();
        let what = format!(
            "{} to reach offset {target} of {}",
            self.addr(),
            master.addr()
        );
        wait_until(timeout, &what, || {
            self.try_info("replication")
                .ok()
                .and_then(|i| {
                    i.get("master_repl_offset")
                        .and_then(|v| v.parse::<i64>().ok())
                })
                .is_some_and(|off| off >= target)
        });
    }

    /// `REPLICAOF NO ONE`, then waits until the node reports role master.
    pub fn promote(&self) {
        let r = self.cmd_ok(&["REPLICAOF", "NO", "ONE"]);
        assert!(r.is_ok(), "REPLICAOF NO ONE on {}: {r}", self.addr());
        self.wait_for_role("master", START_TIMEOUT);
    }

    /// Makes this node a replica of `master` (setting `masterauth` when the master has a
    /// password) and waits until the link is up.
    pub fn replicate_from(&self, master: &RedisNode) {
        self.replicaof_addr(&master.addr(), master.password());
        let port = master.port().to_string();
        let what = format!("{} to replicate from {}", self.addr(), master.addr());
        wait_until(LINK_TIMEOUT, &what, || {
            self.try_info("replication").ok().is_some_and(|i| {
                i.get("master_port") == Some(&port)
                    && i.get("master_link_status").map(String::as_str) == Some("up")
            })
        });
    }

    /// Sends `REPLICAOF host port` for any "host:port" without waiting for the link.
    pub fn replicaof_addr(&self, addr: &str, masterauth: Option<&str>) {
        if let Some(pw) = masterauth {
            self.cmd_ok(&["CONFIG", "SET", "masterauth", pw]);
        }
        let (host, port) = addr
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("address {addr} has no port"));
        let r = self.cmd_ok(&["REPLICAOF", host, port]);
        assert!(r.is_ok(), "REPLICAOF {addr} on {}: {r}", self.addr());
    }

    /// `GET key` as a string; panics if the node does not answer.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.cmd_ok(&["GET", key]) {
            Reply::Bulk(None) => None,
            r => Some(
                r.as_string()
                    .unwrap_or_else(|| panic!("GET {key} on {}: {r}", self.addr())),
            ),
        }
    }

    /// `SET key value`; panics unless the node says OK.
    pub fn set(&self, key: &str, value: &str) {
        let r = self.cmd_ok(&["SET", key, value]);
        assert!(r.is_ok(), "SET {key} on {}: {r}", self.addr());
    }
}

/// Parses INFO text ("key:value" lines, "# Section" headers) into a map.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sentinels
// ---------------------------------------------------------------------------------------------

/// A group of real `redis-sentinel` processes monitoring one master.
///
/// It exists for the proxy's Sentinel integration and for realistic failovers driven by
/// Sentinel itself. Each sentinel has its own temp dir and writable config file (Sentinel
/// rewrites it), its own free loopback port, and is stopped on drop.
pub struct Sentinels {
    master_name: String,
    procs: Vec<ServerProcess>,
}

impl Sentinels {
    /// Starts `n` sentinels monitoring `master` as `master_name` with the given quorum,
    /// `down-after-milliseconds`, `failover-timeout` and `parallel-syncs 1`, and waits until
    /// each one knows the master's address. Use [`Sentinels::wait_ready`] before a failover.
    pub fn start(
        n: usize,
        master_name: &str,
        master: &RedisNode,
        quorum: usize,
        down_after_ms: u64,
        failover_timeout_ms: u64,
    ) -> Sentinels {
        assert!(n > 0, "at least one sentinel");
        let master_port = master.port();
        let password = master.password().map(str::to_owned);
        let procs = (0..n)
            .map(|_| {
                ServerProcess::launch("redis-sentinel", "sentinel.log", None, |port, dir, log| {
                    let mut conf = format!(
                        "port {port}\n\
                         bind 127.0.0.1\n\
                         protected-mode no\n\
                         daemonize no\n\
                         dir {dir}\n\
                         logfile {log}\n\
                         sentinel resolve-hostnames no\n\
                         sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}\n\
                         sentinel down-after-milliseconds {master_name} {down_after_ms}\n\
                         sentinel failover-timeout {master_name} {failover_timeout_ms}\n\
                         sentinel parallel-syncs {master_name} 1\n",
                        dir = dir.display(),
                        log = log.display(),
                    );
                    if let Some(pw) = &password {
                        conf.push_str(&format!("sentinel auth-pass {master_name} {pw}\n"));
                    }
                    conf
                })
            })
            .collect();
        let s = Sentinels {
            master_name: master_name.to_owned(),
            procs,
        };
        let expected = master.addr();
        for i in 0..n {
            wait_until(
                START_TIMEOUT,
                &format!("sentinel {} to know master {expected}", s.addr(i)),
                || s.master_addr_of(i).as_deref() == Some(expected.as_str()),
            );
        }
        s
    }

    /// The monitored master's name.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Number of sentinels (running or not).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// "127.0.0.1:PORT" of sentinel `i`.
    pub fn addr(&self, i: usize) -> String {
        self.procs[i].addr()
    }

    /// Addresses of all sentinels, e.g. for the proxy's `[sentinel] addresses`.
    pub fn addrs(&self) -> Vec<String> {
        self.procs.iter().map(ServerProcess::addr).collect()
    }

    /// Pid of sentinel `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].pid()
    }

    /// The last `n` lines of sentinel `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        self.procs[i].log_tail(n)
    }

    /// Whether sentinel `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_running()
    }

    /// Sends one command to sentinel `i` on a fresh connection.
    pub fn cmd(&self, i: usize, args: &[&str]) -> Result<Reply, String> {
        Client::connect(&self.addr(i))?.cmd(args)
    }

    /// The master address ("127.0.0.1:PORT") as sentinel `i` sees it.
    pub fn master_addr_of(&self, i: usize) -> Option<String> {
        let r = self
            .cmd(
                i,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name],
            )
            .ok()?;
        match r.as_array() {
            Some([host, port]) => Some(format!("{}:{}", host.as_str()?, port.as_str()?)),
            _ => None,
        }
    }

    /// The master address as the first running sentinel that answers sees it.
    pub fn master_addr(&self) -> Option<String> {
        (0..self.len())
            .filter(|&i| self.is_running(i) && !self.procs[i].paused)
            .find_map(|i| self.master_addr_of(i))
    }

    /// Waits until every running sentinel reports `addr` as the master.
    pub fn wait_master_addr(&self, addr: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("all sentinels to report master {addr}"),
            || {
                (0..self.len())
                    .filter(|&i| self.is_running(i) && !self.procs[i].paused)
                    .all(|i| self.master_addr_of(i).as_deref() == Some(addr))
            },
        );
    }

    /// Healthy entries (flags exactly `flag`, e.g. "slave" or "sentinel") of
    /// `SENTINEL <what> <name>` on sentinel `i`; replicas must also have their link up.
    fn healthy_count(&self, i: usize, what: &str, flag: &str) -> usize {
        let Ok(r) = self.cmd(i, &["SENTINEL", what, &self.master_name]) else {
            return 0;
        };
        r.as_array()
            .unwrap_or(&[])
            .iter()
            .map(Reply::to_map)
            .filter(|m| m.get("flags").map(String::as_str) == Some(flag))
            .filter(|m| {
                flag != "slave" || m.get("master-link-status").map(String::as_str) == Some("ok")
            })
            .count()
    }

    /// Waits until every running sentinel sees the master up, at least `num_replicas` healthy
    /// replicas and all the other running sentinels, so that a failover can pick a replica
    /// and reach a quorum.
    pub fn wait_ready(&self, num_replicas: usize) {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        let others = running.len().saturating_sub(1);
        for &i in &running {
            let what = format!(
                "sentinel {} to see the master, {num_replicas} replicas and {others} other sentinels",
                self.addr(i)
            );
            wait_until(SENTINEL_READY_TIMEOUT, &what, || {
                let master_ok = self
                    .cmd(i, &["SENTINEL", "MASTER", &self.master_name])
                    .ok()
                    .is_some_and(|r| r.to_map().get("flags").map(String::as_str) == Some("master"));
                master_ok
                    && self.healthy_count(i, "REPLICAS", "slave") >= num_replicas
                    && self.healthy_count(i, "SENTINELS", "sentinel") >= others
            });
        }
    }

    /// `SENTINEL FAILOVER <name>` via the first running sentinel; `Err` carries the error
    /// reply (e.g. NOGOODSLAVE, INPROG) or the transport error.
    pub fn failover(&self) -> Result<(), String> {
        let i = (0..self.len())
            .find(|&i| self.is_running(i) && !self.procs[i].paused)
            .ok_or("no running sentinel")?;
        match self.cmd(i, &["SENTINEL", "FAILOVER", &self.master_name])? {
            r if r.is_ok() => Ok(()),
            other => Err(format!("SENTINEL FAILOVER via {}: {other}", self.addr(i))),
        }
    }

    /// SIGKILL sentinel `i`.
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }

    /// SIGTERM sentinel `i` and wait for it to exit (SIGKILL after 5 s).
    pub fn stop(&mut self, i: usize) {
        self.procs[i].stop();
    }

    /// Starts sentinel `i` again on its port with its (rewritten) config.
    pub fn restart(&mut self, i: usize) {
        self.procs[i].restart();
    }

    /// SIGSTOP sentinel `i`.
    pub fn pause(&mut self, i: usize) {
        self.procs[i].pause();
    }

    /// SIGCONT sentinel `i`.
    pub fn resume(&mut self, i: usize) {
        self.procs[i].resume();
    }
}

/// What a [`spawn_writer`] saw.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Keys the endpoint acknowledged with `+OK`.
    pub acked: Vec<String>,
    /// Error replies (e.g. `READONLY …`).
    pub errors: Vec<String>,
    /// Times the connection failed (closed, reset, timed out) and was opened again.
    pub reconnects: u32,
    /// The longest time between two acknowledged writes.
    pub longest_gap: Duration,
}

/// Writes numbered keys (`prefix:N`) through `addr` every few ms on one long-lived connection,
/// reconnecting on failure, until `stop` (or two minutes).
pub fn spawn_writer(
    addr: String,
    prefix: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<WriterReport> {
    thread::spawn(move || {
        let mut r = WriterReport::default();
        let mut conn: Option<Client> = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_ack = Instant::now();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            n += 1;
            let key = format!("{prefix}:{n}");
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Client::connect(&addr) {
                    Ok(mut c) => {
                        c.set_timeout(Some(Duration::from_secs(15)));
                        conn.insert(c)
                    }
                    Err(_) => {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            match c.cmd(&["SET", &key, "1"]) {
                Ok(Reply::Status(s)) if s == "OK" => {
                    r.longest_gap = r.longest_gap.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    r.acked.push(key);
                }
                Ok(Reply::Error(e)) => r.errors.push(e),
                Ok(_) => {}
                Err(_) => {
                    r.reconnects += 1;
                    conn = None;
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
        r
    })
}

/// The sentinels' name for the master in tests.
pub const NAME: &str = "mymaster";

/// A master, two replicas and three sentinels (quorum 2, down-after 1000 ms, failover-timeout
/// 3000 ms), and the proxy in front of the nodes with `[sentinel]` over the three.
pub struct Cluster {
    pub nodes: Vec<RedisNode>,
    pub sentinels: Sentinels,
    pub proxy: proxy::Proxy,
}

impl Cluster {
    /// Starts it; `extra` is TOML for the proxy's top level (before `[sentinel]`). Returns once
    /// the proxy routes to the master and is subscribed to every sentinel.
    pub fn start(extra: &str) -> Cluster {
        let m = RedisNode::master();
        let r1 = RedisNode::replica_of(&m);
        let r2 = RedisNode::replica_of(&m);
        let sentinels = Sentinels::start(3, NAME, &m, 2, 1000, 3000);
        sentinels.wait_ready(2);
        let nodes = vec![m, r1, r2];
        let backends: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
        let proxy = proxy::Proxy::start(
            &backends,
            &format!("{extra}{}", sentinel_section(&sentinels.addrs())),
        );
        proxy.wait_master(&nodes[0].addr());
        proxy.wait_subscribed(3);
        Cluster {
            nodes,
            sentinels,
            proxy,
        }
    }
}

/// The proxy's `[sentinel]` section over `addrs`.
pub fn sentinel_section(addrs: &[String]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[sentinel]\naddresses = [{}]\nmaster_name = \"{NAME}\"\n",
        list.join(", ")
    )
}

impl RedisNode {
    /// The keys of `keys` this node does not have (checked with `EXISTS` on one connection).
    pub fn missing(&self, keys: &[String]) -> Vec<String> {
        let mut c = self.client().expect("connect");
        let mut missing = Vec::new();
        for k in keys {
            let args = ["EXISTS", k.as_str()];
            if c.cmd(&args).ok().and_then(|r| r.as_int()) != Some(1) {
                missing.push(k.clone());
            }
        }
        missing
    }
}

/// A Lua script that keeps the server busy for `ARGV[1]` milliseconds (`EVAL BUSY_SCRIPT 0 MS`).
pub const BUSY_SCRIPT: &str = "local t = redis.call('TIME') \
    local t0 = t[1] * 1000000 + t[2] \
    while true do \
      local n = redis.call('TIME') \
      if n[1] * 1000000 + n[2] - t0 > tonumber(ARGV[1]) * 1000 then break end \
    end \
    return 1";
