//! The app run in-process, on the test's own tokio runtime, in front of fakes served by that same
//! runtime: how the real control plane and data path run under tokio's paused clock
//! (`#[tokio::test(start_paused = true)]`).
//!
//! Why fakes and not `redis-server` here: a paused clock jumps to the next timer whenever the
//! runtime has nothing to do, and an answer from another process takes real time, so a check of
//! a real server would see its timeout fire first. A fake on the same runtime is ready within
//! the same poll of the I/O driver (loopback delivers during the sender's own write), so the
//! only virtual time that passes is what the test scripts: a delay, a held reply, a wait. Every
//! socket here sets `TCP_NODELAY`, as Redis does: otherwise Nagle's algorithm holds a small
//! write until the peer's delayed ACK, 40 ms of real time in which the clock runs on.
//! Sessions run on the caller's runtime (no worker threads), so their drain timers are virtual
//! too.
//!
//! Everything here is loopback on port 0, and ends with the test's runtime.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use redis_master_proxy::app;
use redis_master_proxy::config::{Config, Overrides};
use redis_master_proxy::data::listener;
use redis_master_proxy::data::workers::Workers;

use super::sentinel_wire::{answer, bulk, failover_events, message, split, Answer};

/// Interval between two looks at a condition in [`App::wait_status`] (virtual time).
const POLL: Duration = Duration::from_millis(10);

/// Logs of the app under test, printed by libtest for a failing test (`RUST_LOG` filters them;
/// `info` by default).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// RESP over tokio sockets
// ---------------------------------------------------------------------------------------------

/// Reads one command (an array of bulk strings); `None` at end of stream or on anything else.
async fn read_command(r: &mut BufReader<OwnedReadHalf>) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n.min(64) {
        line.clear();
        r.read_line(&mut line).await.ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).await.ok()?;
        args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    Some(args)
}

/// A client connection (to the proxy, usually) that reads one-line replies.
pub struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Conn {
    pub async fn connect(addr: &str) -> Conn {
        let s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Conn {
            r: BufReader::new(r),
            w,
        }
    }

    /// Sends one command.
    pub async fn send(&mut self, args: &[&str]) {
        self.w
            .write_all(&super::encode_command(args))
            .await
            .expect("send a command");
    }

    /// The next reply line without its `\r\n` (`+PONG`, `-ERR …`); `None` once the connection
    /// is closed (end of stream or reset).
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.r.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_string()),
        }
    }

    /// Sends one command and reads its reply line.
    pub async fn cmd(&mut self, args: &[&str]) -> Option<String> {
        self.send(args).await;
        self.line().await
    }
}

// ---------------------------------------------------------------------------------------------
// A fake Redis node
// ---------------------------------------------------------------------------------------------

/// A replication history id: 40 characters, like Redis's, made of `tag`.
pub fn replid(tag: char) -> String {
    std::iter::repeat_n(tag, 40).collect()
}

/// What a [`FakeRedis`] answers to `INFO replication`.
#[derive(Clone, Debug)]
pub struct Repl {
    /// `master` or `slave`.
    pub role: &'static str,
    /// The history it serves.
    pub replid: String,
    /// The history it was promoted out of.
    pub replid2: Option<String>,
    pub offset: u64,
    /// Replicas attached (a master).
    pub replicas: u32,
    /// The master it follows (a replica), `127.0.0.1:PORT`.
    pub master: Option<String>,
}

impl Repl {
    /// A master of history `replid` with `replicas` attached.
    pub fn master(replid: &str, replicas: u32) -> Repl {
        Repl {
            role: "master",
            replid: replid.to_string(),
            replid2: None,
            offset: 1000,
            replicas,
            master: None,
        }
    }

    /// A replica following `master`, in sync.
    pub fn replica_of(master: &FakeRedis) -> Repl {
        let m = master.repl();
        Repl {
            role: "slave",
            replid: m.replid,
            replid2: None,
            offset: m.offset,
            replicas: 0,
            master: Some(master.addr.clone()),
        }
    }

    /// A replica of `master` promoted out of its history, now serving `replid` with `replicas`
    /// attached (as after `REPLICAOF NO ONE` and the other replicas following it).
    pub fn promoted_from(master: &FakeRedis, replid: &str, replicas: u32) -> Repl {
        let m = master.repl();
        Repl {
            role: "master",
            replid: replid.to_string(),
            replid2: Some(m.replid),
            offset: m.offset,
            replicas,
            master: None,
        }
    }

    fn info(&self) -> String {
        let mut s = format!("# Replication\r\nrole:{}\r\n", self.role);
        if let Some(m) = &self.master {
            let (h, p) = split(m);
            s += &format!("master_host:{h}\r\nmaster_port:{p}\r\nmaster_link_status:up\r\n");
        }
        s += &format!("connected_slaves:{}\r\n", self.replicas);
        for i in 0..self.replicas {
            s += &format!(
                "slave{i}:ip=127.0.0.1,port={},state=online,offset={},lag=0\r\n",
                10_000 + i,
                self.offset
            );
        }
        let zeros = replid('0');
        s += &format!(
            "master_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\n",
            self.replid,
            self.replid2.as_deref().unwrap_or(&zeros),
            self.offset
        );
        s
    }
}

struct NodeState {
    repl: Repl,
    /// What `repl` becomes once the next `INFO` has been answered.
    then: Option<Repl>,
    /// How long each `INFO` takes to answer.
    info_delay: Duration,
    /// `INFO` replies sent.
    infos: u64,
    /// Every other command received (`AUTH` aside), joined by spaces, in order.
    commands: Vec<String>,
}

/// A Redis node served by the test's runtime, scripted by the test. It answers `INFO` with
/// [`Repl`], `PING` with `+PONG`, `HOLD` with `+RELEASED` once the test calls
/// [`FakeRedis::release`], and anything else with `+OK`; it records every command a client
/// sends. Dropped or [`killed`](FakeRedis::kill), it closes its connections and refuses new ones.
pub struct FakeRedis {
    pub addr: String,
    state: Arc<Mutex<NodeState>>,
    release: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl FakeRedis {
    pub async fn start(repl: Repl) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake redis");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(Mutex::new(NodeState {
            repl,
            then: None,
            info_delay: Duration::ZERO,
            infos: 0,
            commands: Vec::new(),
        }));
        let (release, released) = watch::channel(false);
        let st = state.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.spawn(serve_node(s, st.clone(), released.clone()));
            }
        });
        FakeRedis {
            addr,
            state,
            release,
            server: Some(server),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut NodeState) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    pub fn repl(&self) -> Repl {
        self.with(|s| s.repl.clone())
    }

    /// Answers `INFO` with `repl` from now on.
    pub fn set(&self, repl: Repl) {
        self.with(|s| s.repl = repl);
    }

    /// Answers the next `INFO` as now, and with `repl` after it.
    pub fn then(&self, repl: Repl) {
        self.with(|s| s.then = Some(repl));
    }

    /// Every `INFO` takes `d` (virtual time) to answer.
    pub fn delay_info(&self, d: Duration) {
        self.with(|s| s.info_delay = d);
    }

    /// `INFO` replies sent so far.
    pub fn infos(&self) -> u64 {
        self.with(|s| s.infos)
    }

    /// Commands received from clients so far (`INFO` and `AUTH` aside).
    pub fn commands(&self) -> Vec<String> {
        self.with(|s| s.commands.clone())
    }

    /// Whether a command starting with `prefix` was received.
    pub fn received(&self, prefix: &str) -> bool {
        self.with(|s| s.commands.iter().any(|c| c.starts_with(prefix)))
    }

    /// Answers every `HOLD` received so far or later.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    /// Stops: open connections close, new ones are refused.
    pub fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve_node(
    s: TcpStream,
    state: Arc<Mutex<NodeState>>,
    mut released: watch::Receiver<bool>,
) {
    let _ = s.set_nodelay(true);
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    while let Some(cmd) = read_command(&mut r).await {
        let name = cmd
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_str() {
            "AUTH" => "+OK\r\n".to_string(),
            "INFO" => {
                let delay = state.lock().expect("fake state").info_delay;
                tokio::time::sleep(delay).await;
                let mut st = state.lock().expect("fake state");
                st.infos += 1;
                let text = st.repl.info();
                if let Some(next) = st.then.take() {
                    st.repl = next;
                }
                bulk(&text)
            }
            _ => {
                state
                    .lock()
                    .expect("fake state")
                    .commands
                    .push(cmd.join(" "));
                match name.as_str() {
                    "PING" => "+PONG\r\n".to_string(),
                    "HOLD" => {
                        if released.wait_for(|r| *r).await.is_err() {
                            return;
                        }
                        "+RELEASED\r\n".to_string()
                    }
                    _ => "+OK\r\n".to_string(),
                }
            }
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A fake sentinel
// ---------------------------------------------------------------------------------------------

/// The sentinels' name for the master in these tests.
pub const MASTER_NAME: &str = "mymaster";

/// A sentinel served by the test's runtime: it names the master the test says
/// (`SENTINEL get-master-addr-by-name`), answers `PING`, and sends its subscribers the events
/// the test [`announce`](FakeSentinel::announce)s, when it says.
pub struct FakeSentinel {
    pub addr: String,
    names: Arc<Mutex<String>>,
    events: broadcast::Sender<(String, String)>,
    server: JoinHandle<()>,
}

impl FakeSentinel {
    /// Starts it naming `master` (`127.0.0.1:PORT`).
    pub async fn start(master: &str) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake sentinel");
        let addr = listener.local_addr().expect("local addr").to_string();
        let names = Arc::new(Mutex::new(master.to_string()));
        let (events, _) = broadcast::channel(64);
        let (n, ev) = (names.clone(), events.clone());
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.spawn(serve_sentinel(s, n.clone(), ev.clone()));
            }
        });
        FakeSentinel {
            addr,
            names,
            events,
            server,
        }
    }

    /// Names `master` from now on.
    pub fn name(&self, master: &str) {
        *self.names.lock().expect("fake sentinel") = master.to_string();
    }

    /// Connections subscribed to its events.
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Sends `payload` on `channel` to every subscriber.
    pub fn announce(&self, channel: &str, payload: &str) {
        let _ = self.events.send((channel.to_string(), payload.to_string()));
    }

    /// The two events with which Sentinel commits to failing `master` over to `replica`:
    /// `+selected-slave` and `+failover-state-send-slaveof-noone` (Redis 7's payloads).
    pub fn announce_failover(&self, master: &str, replica: &str) {
        for (ch, payload) in failover_events(MASTER_NAME, master, replica) {
            self.announce(ch, &payload);
        }
    }
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_sentinel(
    s: TcpStream,
    names: Arc<Mutex<String>>,
    events: broadcast::Sender<(String, String)>,
) {
    let _ = s.set_nodelay(true);
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    while let Some(cmd) = read_command(&mut r).await {
        let named = names.lock().expect("fake sentinel").clone();
        let reply = match answer(&cmd, MASTER_NAME, &named) {
            Answer::Reply(reply) => reply,
            Answer::Subscribed(confirmations) => {
                let mut rx = events.subscribe();
                if w.write_all(confirmations.as_bytes()).await.is_err() {
                    return;
                }
                let mut ignored = [0u8; 64];
                loop {
                    tokio::select! {
                        ev = rx.recv() => {
                            let Ok((ch, payload)) = ev else { return };
                            if w.write_all(message(&ch, &payload).as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        // The subscriber went away.
                        n = r.read(&mut ignored) => if !matches!(n, Ok(1..)) { return },
                    }
                }
            }
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------

/// The proxy, started in-process with [`app::run`] on listeners bound here.
pub struct App {
    /// Client address (`127.0.0.1:PORT`).
    pub client: String,
    /// Admin address.
    pub admin: String,
    events: mpsc::Sender<app::Event>,
    task: JoinHandle<app::ShutdownReport>,
    ticker: JoinHandle<()>,
}

/// The step of [`App`]'s ticker.
const TICK: Duration = Duration::from_millis(1);

/// A config for [`App::start`]: `backends`, then `extra` TOML (top-level keys, then tables).
pub fn config(backends: &[&str], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!("backends = [{}]\n{extra}\n", list.join(", "))
}

/// The `[sentinel]` section over `sentinels`.
pub fn sentinel_section(sentinels: &[&str]) -> String {
    let list: Vec<String> = sentinels.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[sentinel]\naddresses = [{}]\nmaster_name = \"{MASTER_NAME}\"\n",
        list.join(", ")
    )
}

impl App {
    /// Starts the app with `toml` (validated as a file would be); sessions run on this runtime.
    pub async fn start(toml: &str) -> App {
        init_logs();
        let cfg = Config::parse(toml, "inprocess.toml", &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("loopback");
        let client = listener::bind(loopback).expect("bind the client listener");
        let admin = listener::bind(loopback).expect("bind the admin listener");
        let (c, a) = (
            client.local_addr().expect("client addr").to_string(),
            admin.local_addr().expect("admin addr").to_string(),
        );
        let (events, rx) = mpsc::channel(4);
        let task = tokio::spawn(app::run(cfg, client, admin, Workers::none(), rx));
        // Whenever the runtime waits for I/O (a reply crossing a socket), the paused clock
        // jumps to the next timer, even though loopback I/O is ready at once. A timer never
        // more than 1 ms away bounds each such jump, so a chain of replies costs a few ms of
        // virtual time, not a check interval each.
        let ticker = tokio::spawn(async {
            loop {
                tokio::time::sleep(TICK).await;
            }
        });
        App {
            client: c,
            admin: a,
            events,
            task,
            ticker,
        }
    }

    /// `GET path` on the admin listener: `(status code, body)`.
    pub async fn http(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.admin)
            .await
            .expect("connect admin");
        let _ = s.set_nodelay(true);
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.expect("read response");
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad response: {resp:?}"));
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = self.http("/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// The backend routed to now (`None`: no route).
    pub async fn master(&self) -> Option<String> {
        self.status().await["master"]["backend"]
            .as_str()
            .map(str::to_string)
    }

    /// Polls `/status` every 10 ms of virtual time until `cond` holds, and returns that status;
    /// panics with `what` after `timeout` of virtual time.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status().await;
            if cond(&st) {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} (virtual) waiting for: {what}; status: {st}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the route goes to `backend`.
    pub async fn wait_master(&self, backend: &str) -> serde_json::Value {
        self.wait_status(
            Duration::from_secs(30),
            &format!("the route to {backend}"),
            |st| st["master"]["backend"].as_str() == Some(backend),
        )
        .await
    }

    /// Shuts the app down and returns its report.
    pub async fn stop(mut self) -> app::ShutdownReport {
        let _ = self.events.send(app::Event::Shutdown).await;
        (&mut self.task).await.expect("the app task")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.ticker.abort();
        self.task.abort();
    }
}
