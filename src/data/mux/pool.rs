//! Shared backend connections: a few per data-path thread, each carrying many clients'
//! commands.
//!
//! A **slot** is one task that owns at most one backend connection at a time. Sessions hand it
//! [`Batch`]es (the complete commands one read of a client produced); the slot writes every
//! batch waiting, from every client, with one `writev`, then reads replies and returns each
//! client its own, in order, by counting complete replies (a shared connection speaks one
//! protocol and is never subscribed, so every command gets exactly one reply). A client always
//! uses the same slot while its protocol stays the same, so its commands run in the order it
//! sent them (a client that changes protocol waits for its replies first: [`super`]).
//!
//! # Protocols
//! Slots come per protocol: RESP2 ones, and RESP3 ones, started on a thread when its first
//! client sends `HELLO 3`, whose connections send `HELLO 3` as soon as they connect, before any
//! client's command. Whatever that `HELLO 3` answers is the state a client's own connection would
//! be in after its own: a map (RESP3 from then on), or an error from a master that does not
//! speak RESP3 (the connection stays RESP2, and so does every client whose `HELLO 3` it then
//! answers with the same error).
//!
//! # Routes, pauses, drains
//! A slot connection belongs to one route, like a 1:1 session:
//! - nothing is written while the route is paused, and replies are not read (they wait in the
//!   socket), so no client byte reaches a suspect master and no reply leaves it;
//! - once the route drains, nothing more is written to it. A graceful drain delivers the
//!   replies of commands in flight (up to `drain_timeout`); an immediate one does not;
//! - a command in flight whose reply cannot be delivered (immediate drain, drain timeout, the
//!   connection lost) is answered with [`ERR_LOST`]: it may or may not have run, and it is
//!   never sent again. Commands not written yet are not in flight: they go to the next route
//!   when it comes, or are answered with [`ERR_NO_MASTER`] after `wait_for_master`.
//!
//! The client's own connection stays open through all of this: a failover costs unpinned
//! clients an error on the commands in flight, not a reconnect.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::Protocol;
use super::reply::{Scan, Scanner};
use crate::data::listener::DataPath;
use crate::metrics as m;
use crate::routing::{DrainMode, DrainSignal, Route};

/// Shared connections per data-path thread. Few: the fewer connections, the more commands per
/// write and per read on both sides (Redis's CPU per command falls with the batch); more than
/// one so a large reply does not hold every client of a thread behind it.
pub const SLOTS_PER_THREAD: usize = 2;

/// The reply to a command in flight on a shared connection that was lost: it may have run.
pub const ERR_LOST: &[u8] =
    b"-ERR redis-master-proxy: the connection to the master was lost before the reply; the command may have run\r\n";
/// The reply to a command that found no master within `wait_for_master`: it did not run.
pub const ERR_NO_MASTER: &[u8] =
    b"-ERR redis-master-proxy: no master available; the command was not run\r\n";

/// Replies shorter than this are copied out of the read buffer, so it is reused; longer ones
/// are handed over without a copy.
const COPY_REPLIES_UP_TO: usize = 64 * 1024;
/// Read buffer of a shared connection.
const READ_BUFFER: usize = 64 * 1024;
/// Batches gathered into one `writev`.
const MAX_IOV: usize = 64;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Complete commands from one client, in its order.
pub(crate) struct Batch {
    pub bytes: Bytes,
    /// Commands in `bytes` (each gets one reply).
    pub count: usize,
    /// Where the replies go.
    pub reply: mpsc::UnboundedSender<Replies>,
    /// When the client sent it: it waits for a master at most `wait_for_master` from here.
    pub queued: Instant,
}

/// Replies to some of a client's commands, in order.
pub(crate) struct Replies {
    pub bytes: Bytes,
    /// Commands these bytes answer.
    pub count: usize,
}

/// A command written (at least in part) and not answered yet.
struct Pending {
    reply: mpsc::UnboundedSender<Replies>,
    left: usize,
}

thread_local! {
    /// This thread's slots, per data path (keyed by its address: the client and sentinel
    /// listeners, or apps started one after another in tests, never share slots).
    static POOLS: RefCell<Vec<Pool>> = const { RefCell::new(Vec::new()) };
}

struct Pool {
    key: usize,
    protocol: Protocol,
    slots: Vec<mpsc::UnboundedSender<Batch>>,
    next: usize,
}

/// A slot of this thread speaking `protocol`, for a new client (round robin), started on first
/// use.
pub(crate) fn slot(
    dp: &Arc<DataPath>,
    protocol: Protocol,
    stop: &CancellationToken,
) -> mpsc::UnboundedSender<Batch> {
    let key = Arc::as_ptr(dp) as usize;
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        pools.retain(|p| p.slots.iter().all(|s| !s.is_closed()));
        let i = match pools
            .iter()
            .position(|p| p.key == key && p.protocol == protocol)
        {
            Some(i) => i,
            None => {
                let slots = (0..SLOTS_PER_THREAD)
                    .map(|_| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tokio::spawn(run(dp.clone(), protocol, rx, stop.clone()));
                        tx
                    })
                    .collect();
                pools.push(Pool {
                    key,
                    protocol,
                    slots,
                    next: 0,
                });
                pools.len() - 1
            }
        };
        let p = &mut pools[i];
        p.next = (p.next + 1) % p.slots.len();
        p.slots[p.next].clone()
    })
}

/// Answers `count` commands with `err`.
fn answer_all(reply: &mpsc::UnboundedSender<Replies>, count: usize, err: &'static [u8]) {
    if count == 0 {
        return;
    }
    let bytes = if count == 1 {
        Bytes::from_static(err)
    } else {
        Bytes::from(err.repeat(count))
    };
    let _ = reply.send(Replies { bytes, count });
}

/// One slot: connects to the current route when there is work, serves until the connection
/// ends, again. Ends when the data path stops while the slot is idle.
async fn run(
    dp: Arc<DataPath>,
    protocol: Protocol,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    stop: CancellationToken,
) {
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut refused: Option<u64> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        if queue.is_empty() {
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => queue.push_back(b),
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
        let settings = dp.settings.load_full();
        let Some(route) = route_for(&dp, &mut refused, &mut queue, settings.wait_for_master).await
        else {
            continue;
        };
        if route.is_paused() {
            route.wait_open().await;
            if route.is_drained() {
                continue;
            }
        }
        let connected =
            tokio::time::timeout(settings.connect_timeout, TcpStream::connect(route.addr)).await;
        let mut stream = match connected {
            Ok(Ok(s)) if !route.is_drained() => s,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                tracing::debug!(backend = %route.backend, error = %e, "shared connection: cannot connect to the master");
                refused = Some(route.epoch);
                continue;
            }
            Err(_) => {
                tracing::debug!(backend = %route.backend, "shared connection: connect timed out");
                refused = Some(route.epoch);
                continue;
            }
        };
        refused = None;
        let _ = stream.set_nodelay(true);
        if protocol == Protocol::Resp3 {
            if let Err(e) = switch_to_resp3(&mut stream, settings.connect_timeout).await {
                // As a refused connection: the next route, or an error after `wait_for_master`.
                tracing::debug!(backend = %route.backend, error = %e, "shared connection: HELLO 3 failed");
                refused = Some(route.epoch);
                continue;
            }
        }
        metrics::gauge!(m::MUX_POOLED).increment(1.0);
        let mut conn = Conn {
            stream,
            protocol,
            route: &route,
            sent: VecDeque::new(),
            written: 0,
            answered: false,
        };
        let end = conn
            .serve(&mut queue, &mut rx, &stop, settings.drain_timeout)
            .await;
        let answered = conn.answered;
        conn.fail_in_flight(&mut queue);
        drop(conn);
        metrics::gauge!(m::MUX_POOLED).decrement(1.0);
        match end {
            ConnEnd::Drained | ConnEnd::Idle => backoff = BACKOFF_MIN,
            ConnEnd::Lost => {
                // A master that closes connections at once (maxclients, a kill loop) is not
                // hammered: wait before the next connection, longer each time nothing was
                // answered.
                backoff = if answered {
                    BACKOFF_MIN
                } else {
                    (backoff * 2).min(BACKOFF_MAX)
                };
                tokio::time::sleep(backoff).await;
            }
        }
        if matches!(end, ConnEnd::Idle) {
            return;
        }
    }
}

/// The route to send `queue` to, waiting for one (not `refused`, whose master just refused a
/// connection) while the oldest batch may wait; batches that waited `wait_for_master` are
/// answered [`ERR_NO_MASTER`] and `refused` is forgotten (the next batch tries it again).
/// `None`: look again.
async fn route_for(
    dp: &DataPath,
    refused: &mut Option<u64>,
    queue: &mut VecDeque<Batch>,
    wait_for_master: Duration,
) -> Option<Arc<Route>> {
    if let Some(r) = dp
        .table
        .load()
        .filter(|r| Some(r.epoch) != *refused && !r.is_drained())
    {
        return Some(r);
    }
    let oldest = queue.front()?.queued;
    let remaining = (oldest + wait_for_master).saturating_duration_since(Instant::now());
    if let Some(r) = dp.table.wait_for_route_except(*refused, remaining).await {
        if !r.is_drained() {
            return Some(r);
        }
        return None;
    }
    *refused = None;
    let now = Instant::now();
    while queue
        .front()
        .is_some_and(|b| now.duration_since(b.queued) >= wait_for_master)
    {
        if let Some(b) = queue.pop_front() {
            metrics::counter!(m::MUX_ERRORS, "reason" => "no_master").increment(b.count as u64);
            answer_all(&b.reply, b.count, ERR_NO_MASTER);
        }
    }
    None
}

/// How a shared connection ended.
enum ConnEnd {
    /// Its route drained.
    Drained,
    /// Closed, failed, or sent something else than replies.
    Lost,
    /// The data path is stopping and nothing is queued or in flight.
    Idle,
}

/// One shared backend connection.
struct Conn<'r> {
    stream: TcpStream,
    /// What it was asked to speak (for the metrics).
    protocol: Protocol,
    route: &'r Route,
    /// Batches written at least in part, oldest first, with the replies they still expect.
    sent: VecDeque<Pending>,
    /// Bytes of the queue's first batch already written (it is in `sent` too when non-zero).
    written: usize,
    /// Whether the master answered anything on this connection.
    answered: bool,
}

impl Conn<'_> {
    async fn serve(
        &mut self,
        queue: &mut VecDeque<Batch>,
        rx: &mut mpsc::UnboundedReceiver<Batch>,
        stop: &CancellationToken,
        drain_timeout: Duration,
    ) -> ConnEnd {
        let route = self.route;
        let drain = route.drain_signal();
        let stopping = DrainSignal::new(stop.clone());
        tokio::pin!(drain, stopping);
        let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
        let mut scanner = Scanner::default();
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if route.is_drained() {
                if route.drain_mode() == DrainMode::Immediate || self.sent.is_empty() {
                    return ConnEnd::Drained;
                }
                drain_deadline.get_or_insert_with(|| Instant::now() + drain_timeout);
            }
            let draining = drain_deadline.is_some();
            let paused = route.is_paused();
            let write = !queue.is_empty() && !paused && !draining;
            let idle = queue.is_empty() && self.sent.is_empty();
            if rbuf.capacity() - rbuf.len() < READ_BUFFER / 4 {
                rbuf.reserve(READ_BUFFER);
            }
            let (mut r, mut w) = self.stream.split();
            tokio::select! {
                biased;
                _ = &mut drain, if !draining => {}
                _ = route.wait_open(), if paused => {}
                _ = sleep_until_opt(drain_deadline) => return ConnEnd::Drained,
                res = r.read_buf(&mut rbuf), if !paused => match res {
                    Ok(0) | Err(_) => return ConnEnd::Lost,
                    Ok(_) => {
                        // A reply read just as the route was paused waits for the pause to end;
                        // one read as it drained at once is never delivered.
                        if route.is_paused() {
                            route.wait_open().await;
                        }
                        if route.is_drained() && route.drain_mode() == DrainMode::Immediate {
                            return ConnEnd::Drained;
                        }
                        if !self.dispatch(&mut rbuf, &mut scanner) {
                            return ConnEnd::Lost;
                        }
                    }
                },
                res = write_some(&mut w, queue, self.written), if write => match res {
                    Ok(n) => self.wrote(queue, n),
                    Err(_) => return ConnEnd::Lost,
                },
                b = rx.recv(), if !draining => match b {
                    Some(b) => {
                        queue.push_back(b);
                        while let Ok(b) = rx.try_recv() {
                            queue.push_back(b);
                        }
                    }
                    None => return ConnEnd::Idle,
                },
                _ = &mut stopping, if idle => return ConnEnd::Idle,
            }
        }
    }

    /// Accounts for `n` bytes written from the front of `queue`.
    fn wrote(&mut self, queue: &mut VecDeque<Batch>, mut n: usize) {
        while n > 0 {
            let Some(b) = queue.front() else { return };
            if self.written == 0 {
                self.sent.push_back(Pending {
                    reply: b.reply.clone(),
                    left: b.count,
                });
                metrics::counter!(m::MUX_COMMANDS).increment(b.count as u64);
                if self.protocol == Protocol::Resp3 {
                    metrics::counter!(m::MUX_RESP3_COMMANDS).increment(b.count as u64);
                }
            }
            let take = n.min(b.bytes.len() - self.written);
            self.written += take;
            n -= take;
            if self.written == b.bytes.len() {
                queue.pop_front();
                self.written = 0;
            }
        }
    }

    /// Hands every complete reply in `rbuf` to its client; `false` when the master's bytes are
    /// not replies to what was sent.
    fn dispatch(&mut self, rbuf: &mut BytesMut, scanner: &mut Scanner) -> bool {
        let mut done = 0;
        let mut run = 0;
        loop {
            match scanner.scan(&rbuf[done..]) {
                Scan::Complete(n) => {
                    self.answered = true;
                    done += n;
                    run += 1;
                    let Some(front) = self.sent.front_mut() else {
                        return false;
                    };
                    front.left -= 1;
                    if front.left == 0 {
                        let reply = front.reply.clone();
                        self.sent.pop_front();
                        deliver(&reply, rbuf, done, run);
                        (done, run) = (0, 0);
                    }
                }
                Scan::Incomplete => break,
                Scan::Invalid => return false,
            }
        }
        if run > 0 {
            if let Some(front) = self.sent.front() {
                let reply = front.reply.clone();
                deliver(&reply, rbuf, done, run);
            }
        }
        true
    }

    /// The connection is over: commands in flight are answered [`ERR_LOST`]; a batch written in
    /// part leaves the queue (its first commands may have run); the rest stays for the next
    /// connection.
    fn fail_in_flight(&mut self, queue: &mut VecDeque<Batch>) {
        if self.written > 0 {
            queue.pop_front();
            self.written = 0;
        }
        for p in self.sent.drain(..) {
            metrics::counter!(m::MUX_ERRORS, "reason" => "lost").increment(p.left as u64);
            answer_all(&p.reply, p.left, ERR_LOST);
        }
    }
}

/// `HELLO 3` as a client library sends it.
pub(crate) const HELLO_3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

/// Sends `HELLO 3` on a fresh connection and reads its one reply (within `timeout`): a map, or
/// an error from a master that does not speak RESP3 (see the module doc). Anything else, or
/// bytes after the reply, is an error: the connection's state would be unknown.
pub(crate) async fn switch_to_resp3(
    stream: &mut TcpStream,
    timeout: Duration,
) -> std::io::Result<()> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    tokio::time::timeout(timeout, async {
        stream.write_all(HELLO_3).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scanner = Scanner::default();
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            match scanner.scan(&buf) {
                Scan::Complete(n) if n == buf.len() && matches!(buf[0], b'%' | b'-' | b'!') => {
                    return Ok(())
                }
                Scan::Incomplete if buf.len() < READ_BUFFER => {}
                _ => return Err(invalid()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Sends the first `len` bytes of `rbuf` (`count` replies) to a client.
fn deliver(reply: &mpsc::UnboundedSender<Replies>, rbuf: &mut BytesMut, len: usize, count: usize) {
    let bytes = if len <= COPY_REPLIES_UP_TO {
        let b = Bytes::copy_from_slice(&rbuf[..len]);
        rbuf.advance(len);
        b
    } else {
        rbuf.split_to(len).freeze()
    };
    // A client that went away does not need its replies.
    let _ = reply.send(Replies { bytes, count });
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Writes as much of the queued batches as one `writev` takes.
async fn write_some(
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    queue: &VecDeque<Batch>,
    written: usize,
) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let mut n = 0;
    for (i, b) in queue.iter().take(MAX_IOV).enumerate() {
        let bytes = if i == 0 {
            &b.bytes[written..]
        } else {
            &b.bytes[..]
        };
        slices[i] = IoSlice::new(bytes);
        n = i + 1;
    }
    w.write_vectored(&slices[..n]).await
}
