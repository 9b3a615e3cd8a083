//! One client session: bytes both ways between the client and the master, until either side
//! closes or the route drains.
//!
//! Each direction is a small pump over borrowed halves of the two sockets, and both pumps run in
//! the session's one task. A pump moves bytes either by copying through a buffer (cheapest for
//! small request/response traffic: one `read`, one `write`) or by `splice(2)` through a pipe
//! (cheapest for bulk: no copy into userspace). In `auto` mode a direction starts copying, moves
//! to splice when a read fills the 16 KiB buffer, and back to copying after a few bursts in a
//! row under 8 KiB (the thresholds are measured: `docs/benchmarks/README.md`).
//!
//! Per request the copy path costs one `read` and one `write` per direction: a read that returns
//! less than the buffer tells tokio the socket is drained (edge-triggered epoll), so no extra
//! `read` is spent to see `EAGAIN`. Buffers and pipes exist only during a burst and come from
//! per-thread pools, so an idle session holds neither.
//!
//! # Drain
//! When the route is replaced, the client→master pump stops at once: nothing read from the
//! client after that moment is forwarded (the route is checked before every write to the
//! backend). The master→client pump goes on delivering replies already on their way: the session
//! closes once the master has been quiet for [`DRAIN_QUIET`] after answering the last forwarded
//! request, or at the drain timeout, or at once when the drain is [`DrainMode::Immediate`].
//!
//! # Pause
//! While the route is paused (its master is suspect), both pumps hold what they have read
//! instead of writing it: no client byte reaches the master and no reply reaches the client
//! until the route is resumed. If it drains instead, the session closes without delivering
//! them, so a master that was failed over while it looked slow never gets a request it could
//! acknowledge and then lose.
//!
//! # When the master closes first
//! Redis closes a connection right after its last reply on a protocol error, `QUIT`,
//! `CLIENT KILL` or a shutdown, often while the client is still sending. Closing the client's
//! socket then would lose that reply: the kernel resets a socket closed with unread input, and a
//! reset discards whatever is not yet delivered. So the session stops forwarding client bytes
//! (the master refuses them anyway), delivers everything the master sent up to its end of
//! stream, closes its side towards the client, and then reads and discards what the client
//! still sends until the client closes or [`LINGER`] has passed; only then is the socket closed.
//! None of this costs anything while requests flow: it runs once, when a session ends.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::config::RelayMode;
use crate::data::splice::{Pipe, PIPE_CAPACITY};
use crate::routing::{DrainMode, Route};

/// Size of the copy buffer of one direction during a burst.
pub const COPY_BUFFER: usize = 16 * 1024;
/// In `auto` mode, a spliced burst smaller than this counts as small traffic.
const SMALL_BURST: usize = 8 * 1024;
/// In `auto` mode, consecutive small spliced bursts that move a direction back to copying. More
/// than one, so the short tail of a large message does not flip the direction back and forth.
const SMALL_BURSTS: u32 = 4;
/// A draining session whose master has answered and then been quiet this long is done.
pub const DRAIN_QUIET: Duration = Duration::from_millis(20);
/// How long a session whose master closed first goes on reading (and discarding) what the
/// client sends, after delivering the master's last bytes and closing its side towards the
/// client, so that closing the socket does not reset it and lose those bytes. A client that
/// reads sees the end of stream at once and closes, which ends the wait sooner.
pub const LINGER: Duration = Duration::from_secs(1);
/// Copy buffers kept per runtime thread between bursts.
const BUFFERS_PER_THREAD: usize = 64;

thread_local! {
    static BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer from this thread's pool, returned on drop.
struct Buffer(Option<Box<[u8]>>);

impl Buffer {
    fn take() -> Buffer {
        let b = BUFFERS
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; COPY_BUFFER].into_boxed_slice());
        Buffer(Some(b))
    }
    fn get(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            BUFFERS.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < BUFFERS_PER_THREAD {
                    p.push(b);
                }
            });
        }
    }
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed (and the master then closed or finished replying).
    ClientClosed,
    /// The master closed the connection.
    BackendClosed,
    /// The route changed and the session was drained.
    Drained,
    /// A socket error on either side (a reset, usually).
    Error,
}

/// Which way a pump moves bytes, for metrics and the drain rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ClientToBackend,
    BackendToClient,
}

/// What a pump returns when it stops.
enum PumpEnd {
    Eof,
    Drained,
}

/// Why a pump failed: a failed read means its source is gone; a failed write means its
/// destination is (for the client→master pump: the master closed, and its last bytes may still
/// be on their way to the client).
enum PumpError {
    Read(io::Error),
    Write,
}

/// How [`relay`]'s loop ended: close the client's socket now, or first linger (see [`LINGER`]).
enum Close {
    Now(End),
    AfterLinger(End),
}

/// Progress clocks shared by the two pumps of a session (nanoseconds since the session began),
/// read by the drain rule: a request is outstanding while the last forward is newer than the
/// last reply byte.
struct Clocks {
    /// tokio's clock, as the drain's timers are.
    start: tokio::time::Instant,
    last_request: AtomicU64,
    last_reply: AtomicU64,
}

impl Clocks {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The time of a forward or a reply, strictly after every earlier one: a request forwarded
    /// at the same clock reading as the last reply (tokio's paused test clock gives many) is
    /// still outstanding. Both pumps run in one task, so the two loads see every earlier stamp.
    fn stamp(&self) -> u64 {
        let last = self
            .last_request
            .load(Ordering::Relaxed)
            .max(self.last_reply.load(Ordering::Relaxed));
        self.now().max(last + 1)
    }
}

/// Per-session counters of bytes moved, handed to the caller for metrics.
#[derive(Debug, Default)]
pub struct Bytes {
    pub to_backend: AtomicU64,
    pub to_client: AtomicU64,
}

/// Relays until the session ends.
pub async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    route: &Route,
    mode: RelayMode,
    drain_timeout: Duration,
    bytes: &Bytes,
) -> End {
    let clocks = Clocks {
        start: tokio::time::Instant::now(),
        last_request: AtomicU64::new(0),
        last_reply: AtomicU64::new(0),
    };
    let close = {
        let (client_r, client_w) = client.split();
        let (backend_r, backend_w) = backend.split();
        let up = pump(
            client_r,
            backend_w,
            Dir::ClientToBackend,
            mode,
            route,
            &clocks,
            &bytes.to_backend,
        );
        let down = pump(
            backend_r,
            client_w,
            Dir::BackendToClient,
            mode,
            route,
            &clocks,
            &bytes.to_client,
        );
        let drained = route.drain_signal();
        tokio::pin!(up, down, drained);
        let mut client_eof = false;
        loop {
            tokio::select! {
                // Once the route drains, `up` is never polled again: nothing more is read from
                // the client, so nothing more can be forwarded.
                _ = &mut drained => {
                    break Close::Now(finish_drain(&mut down, route, drain_timeout, &clocks).await);
                }
                r = &mut up, if !client_eof => {
                    match r {
                        // Half-close forwarded: the master sees EOF after the last request and
                        // finishes its replies.
                        Ok((PumpEnd::Eof, w)) => {
                            client_eof = true;
                            let _ = socket2::SockRef::from(w.as_ref()).shutdown(std::net::Shutdown::Write);
                        }
                        Ok((PumpEnd::Drained, _)) => {
                            break Close::Now(finish_drain(&mut down, route, drain_timeout, &clocks).await);
                        }
                        Err(PumpError::Read(_)) => break Close::Now(End::Error),
                        // The master refused bytes: it has closed. What it sent before is still
                        // on its way; `down` ends at its end of stream (or reset) right after.
                        Err(PumpError::Write) => {
                            break match tokio::time::timeout(drain_timeout, down.as_mut()).await {
                                Ok(r) => master_finished(r, false),
                                Err(_) => Close::Now(End::Error),
                            };
                        }
                    }
                }
                r = &mut down => break master_finished(r, client_eof),
            }
        }
    };
    match close {
        Close::Now(end) => end,
        Close::AfterLinger(end) => {
            linger(client).await;
            end
        }
    }
}

/// The master→client pump has ended: everything the master sent has been written to the
/// client. `client_eof`: the client had already closed its side.
fn master_finished(r: Result<(PumpEnd, WriteHalf<'_>), PumpError>, client_eof: bool) -> Close {
    match r {
        // An immediate drain stopped the replies (the route's master is down or was failed
        // over): close without another byte.
        Ok((PumpEnd::Drained, _)) => Close::Now(End::Drained),
        Ok((PumpEnd::Eof, w)) => {
            let _ = socket2::SockRef::from(w.as_ref()).shutdown(std::net::Shutdown::Write);
            if client_eof {
                Close::Now(End::ClientClosed)
            } else {
                Close::AfterLinger(End::BackendClosed)
            }
        }
        // The master reset the connection after its last bytes (it closes with our requests
        // unread): those bytes were delivered all the same.
        Err(PumpError::Read(_)) if client_eof => Close::Now(End::BackendClosed),
        Err(PumpError::Read(_)) => Close::AfterLinger(End::BackendClosed),
        Err(PumpError::Write) => Close::Now(End::Error),
    }
}

/// Closes the client's side gently: end of stream towards it, then read and discard what it
/// still sends until it closes, fails or [`LINGER`] passes, so the close does not reset the
/// connection and discard the master's last bytes still on their way.
async fn linger(client: &mut TcpStream) {
    let _ = socket2::SockRef::from(&*client).shutdown(std::net::Shutdown::Write);
    let mut buf = Buffer::take();
    let deadline = tokio::time::Instant::now() + LINGER;
    while let Ok(Ok(1..)) = tokio::time::timeout_at(deadline, client.read(buf.get())).await {}
}

/// The client→master pump has stopped for a drain: let replies already on their way reach the
/// client, then end.
async fn finish_drain<F, T>(
    down: &mut Pin<&mut F>,
    route: &Route,
    drain_timeout: Duration,
    clocks: &Clocks,
) -> End
where
    F: Future<Output = Result<T, PumpError>>,
{
    if route.drain_mode() == DrainMode::Immediate {
        return End::Drained;
    }
    let deadline = tokio::time::Instant::now() + drain_timeout;
    loop {
        let req = clocks.last_request.load(Ordering::Acquire);
        let rep = clocks.last_reply.load(Ordering::Acquire);
        let now = clocks.now();
        let answered = rep >= req;
        if answered && now.saturating_sub(rep) >= DRAIN_QUIET.as_nanos() as u64 {
            return End::Drained;
        }
        let wait = if answered {
            DRAIN_QUIET.saturating_sub(Duration::from_nanos(now.saturating_sub(rep)))
        } else {
            DRAIN_QUIET
        };
        let wake = (tokio::time::Instant::now() + wait).min(deadline);
        tokio::select! {
            // The master closed or failed while we waited: nothing more will come.
            _ = down.as_mut() => return End::Drained,
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    return End::Drained;
                }
            }
        }
    }
}

/// Moves bytes from `src` to `dst` until `src` ends or fails. Nothing is written while `route`
/// is paused; in the client→master direction nothing is written once it has drained. Returns
/// the write half so the caller can forward a half-close.
async fn pump<'a>(
    mut src: ReadHalf<'a>,
    mut dst: WriteHalf<'a>,
    dir: Dir,
    mode: RelayMode,
    route: &Route,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> Result<(PumpEnd, WriteHalf<'a>), PumpError> {
    let mut splicing = mode == RelayMode::Splice;
    let mut splice_refused = false;
    let mut small_bursts = 0u32;
    loop {
        // Wait without holding a buffer or a pipe. `poll_read_ready` (unlike `readable()`)
        // honours tokio's cooperative budget, so a busy session yields to the others instead of
        // spinning between "ready" and a budget-refused read.
        std::future::poll_fn(|cx| src.as_ref().poll_read_ready(cx))
            .await
            .map_err(PumpError::Read)?;
        if splicing && !splice_refused {
            // A pipe only for the length of the burst: idle sessions hold none.
            if let Some(mut pipe) = Pipe::take() {
                let burst = splice_burst(&src, &dst, &mut pipe, dir, route, clocks, counter).await;
                pipe.give_back();
                match burst {
                    Ok(Burst::Idle { bulk }) => {
                        small_bursts = if bulk { 0 } else { small_bursts + 1 };
                        if mode == RelayMode::Auto && small_bursts >= SMALL_BURSTS {
                            splicing = false;
                            small_bursts = 0;
                        }
                        continue;
                    }
                    Ok(Burst::End(e)) => return Ok((e, dst)),
                    // Some socket types (or kernels) refuse splice: copy from now on. Only a
                    // refused splice *in* falls back: nothing has left the source yet.
                    Err(PumpError::Read(e)) if is_splice_refused(&e) => splice_refused = true,
                    Err(e) => return Err(e),
                }
            }
        }
        match copy_burst(&mut src, &mut dst, dir, mode, route, clocks, counter).await? {
            Burst::Idle { bulk } => {
                if bulk && mode == RelayMode::Auto && !splice_refused {
                    splicing = true;
                }
            }
            Burst::End(e) => return Ok((e, dst)),
        }
    }
}

/// How a burst (reads until the socket is drained) ended.
enum Burst {
    /// The source has nothing more for now; `bulk` says whether the burst looked like a bulk
    /// transfer (so `auto` knows which way to lean next).
    Idle {
        bulk: bool,
    },
    End(PumpEnd),
}

fn is_splice_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
        || e.kind() == io::ErrorKind::Unsupported
}

fn note_progress(dir: Dir, clocks: &Clocks, counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
    let slot = match dir {
        Dir::ClientToBackend => &clocks.last_request,
        Dir::BackendToClient => &clocks.last_reply,
    };
    slot.store(clocks.stamp(), Ordering::Release);
}

/// Reads what is there without waiting: `None` when the socket has nothing now (or tokio's
/// cooperative budget asks the task to yield; the caller's readiness wait then yields).
async fn read_now(src: &mut ReadHalf<'_>, buf: &mut [u8]) -> Option<io::Result<usize>> {
    let mut rb = ReadBuf::new(buf);
    std::future::poll_fn(|cx| match Pin::new(&mut *src).poll_read(cx, &mut rb) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
    .map(|r| r.map(|()| rb.filled().len()))
}

/// Before a write: waits while the route is paused; `true` when the bytes must not be written
/// because the route drained: client bytes never go to a replaced master, and replies stop too
/// when the drain is immediate (its master is down or was failed over).
async fn held_back(route: &Route, dir: Dir) -> bool {
    route.wait_open().await;
    route.is_drained()
        && (dir == Dir::ClientToBackend || route.drain_mode() == DrainMode::Immediate)
}

async fn copy_burst(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    dir: Dir,
    mode: RelayMode,
    route: &Route,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> Result<Burst, PumpError> {
    let mut buf = Buffer::take();
    let buf = buf.get();
    loop {
        // `poll_read` (not `try_read`): a short read clears tokio's readiness, so the next
        // wait costs no syscall.
        let n = match read_now(src, buf).await {
            Some(Ok(0)) => return Ok(Burst::End(PumpEnd::Eof)),
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Burst::Idle { bulk: false })
            }
            Some(Err(e)) => return Err(PumpError::Read(e)),
            None => return Ok(Burst::Idle { bulk: false }),
        };
        if held_back(route, dir).await {
            return Ok(Burst::End(PumpEnd::Drained));
        }
        if dir == Dir::BackendToClient {
            // A reply is arriving: the drain rule counts it from the read, not the write, so a
            // slow client cannot make a finished reply look outstanding.
            clocks.last_reply.store(clocks.stamp(), Ordering::Release);
        }
        dst.write_all(&buf[..n])
            .await
            .map_err(|_| PumpError::Write)?;
        note_progress(dir, clocks, counter, n);
        if n < buf.len() {
            return Ok(Burst::Idle { bulk: false });
        }
        // In `auto` mode one full read moves the direction to splice, so a message of
        // [`COPY_BUFFER`] or more is spliced (measured: at 16 KiB values splice costs 15% less
        // CPU per request than copying; at 8 KiB the two cost the same; below, copy is cheaper).
        if mode == RelayMode::Auto {
            return Ok(Burst::Idle { bulk: true });
        }
    }
}

async fn splice_burst(
    src: &ReadHalf<'_>,
    dst: &WriteHalf<'_>,
    pipe: &mut Pipe,
    dir: Dir,
    route: &Route,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> Result<Burst, PumpError> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let mut burst = 0usize;
    loop {
        let n = match src.try_io(Interest::READABLE, || {
            pipe.splice_in(src.as_raw_fd(), PIPE_CAPACITY)
        }) {
            Ok(0) => return Ok(Burst::End(PumpEnd::Eof)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Burst::Idle {
                    bulk: burst >= SMALL_BURST,
                })
            }
            Err(e) => return Err(PumpError::Read(e)),
        };
        burst += n;
        if dir == Dir::BackendToClient {
            clocks.last_reply.store(clocks.stamp(), Ordering::Release);
        }
        // Empty the pipe before splicing in again, so `pending` stays exact and a slow peer
        // bounds what this session holds to one pipe.
        while pipe.pending > 0 {
            if held_back(route, dir).await {
                return Ok(Burst::End(PumpEnd::Drained));
            }
            match dst.try_io(Interest::WRITABLE, || pipe.splice_out(dst.as_raw_fd())) {
                Ok(_) => {}
                // Bytes are in the pipe now: a refusal here ends the session (a write error),
                // never a fall back to copying, which would lose them.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable().await.map_err(|_| PumpError::Write)?
                }
                Err(_) => return Err(PumpError::Write),
            }
        }
        note_progress(dir, clocks, counter, n);
    }
}
