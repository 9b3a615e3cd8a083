//! One client session: bytes both ways between the client and the master, until either side
//! closes or the route drains.
//!
//! Each direction is a small pump driven by tokio readiness on borrowed sockets, so both run
//! in one task without splitting the streams. A pump moves bytes either by copying through a
//! buffer (cheapest for small request/response traffic: one read, one write) or by `splice(2)`
//! through a pipe (cheapest for bulk: no copy into userspace). In `auto` mode a direction starts
//! copying and moves to splice when reads fill the buffer, then back to copying when a burst ends small.
//! Buffers and pipes exist only during a burst (pipes come from a per-thread pool), so an idle
//! session holds neither.
//!
//! # Drain
//! When the route is replaced, the client→master pump stops at once: nothing read from the
//! client after that moment is forwarded (the route is checked before every write to the
//! backend). The master→client pump goes on delivering replies already on their way: the session
//! closes once the master has been quiet for [`DRAIN_QUIET`] after answering the last forwarded
//! request, or at the drain timeout, or at once when the drain is [`DrainMode::Immediate`].

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::RelayMode;
use crate::routing::{DrainMode, Route};
use crate::splice::{Pipe, PIPE_CAPACITY};

/// Size of the copy buffer of one direction during a burst.
pub const COPY_BUFFER: usize = 16 * 1024;
/// In `auto` mode, consecutive full-buffer reads that move a direction to splice.
const BULK_READS: u32 = 2;
/// A draining session whose master has answered and then been quiet this long is done.
pub const DRAIN_QUIET: Duration = Duration::from_millis(20);

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

/// Progress clocks shared by the two pumps of a session (nanoseconds since the session began),
/// read by the drain rule: a request is outstanding while the last forward is newer than the
/// last reply byte.
struct Clocks {
    start: Instant,
    last_request: AtomicU64,
    last_reply: AtomicU64,
}

impl Clocks {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Per-session counters of bytes moved, handed to the caller for metrics.
#[derive(Debug, Default)]
pub struct Bytes {
    pub to_backend: AtomicU64,
    pub to_client: AtomicU64,
}

/// Relays until the session ends. Both sockets are borrowed; the caller closes them.
pub async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    route: &Route,
    mode: RelayMode,
    drain_timeout: Duration,
    bytes: &Bytes,
) -> End {
    let clocks = Clocks {
        start: Instant::now(),
        last_request: AtomicU64::new(0),
        last_reply: AtomicU64::new(0),
    };
    let up = pump(
        client,
        backend,
        Dir::ClientToBackend,
        mode,
        Some(route),
        &clocks,
        &bytes.to_backend,
    );
    let down = pump(
        backend,
        client,
        Dir::BackendToClient,
        mode,
        None,
        &clocks,
        &bytes.to_client,
    );
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                match r {
                    // Half-close forwarded: the master sees EOF after the last request and
                    // finishes its replies.
                    Ok(PumpEnd::Eof) => shutdown_write(backend),
                    Ok(PumpEnd::Drained) => {
                        return finish_drain(&mut down, route, drain_timeout, &clocks).await;
                    }
                    Err(_) => return End::Error,
                }
            }
            r = &mut down => {
                shutdown_write(client);
                return match r {
                    Ok(_) if up_done => End::ClientClosed,
                    Ok(_) => End::BackendClosed,
                    Err(_) => End::Error,
                };
            }
        }
    }
}

/// The client→master pump has stopped for a drain: let replies already on their way reach the
/// client, then end.
async fn finish_drain<F>(
    down: &mut std::pin::Pin<&mut F>,
    route: &Route,
    drain_timeout: Duration,
    clocks: &Clocks,
) -> End
where
    F: std::future::Future<Output = io::Result<PumpEnd>>,
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
            DRAIN_QUIET - Duration::from_nanos(now.saturating_sub(rep))
        } else {
            DRAIN_QUIET
        };
        let wake = (tokio::time::Instant::now() + wait).min(deadline);
        tokio::select! {
            r = down.as_mut() => {
                // The master closed or failed while we waited: nothing more will come.
                let _ = r;
                return End::Drained;
            }
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    return End::Drained;
                }
            }
        }
    }
}

fn shutdown_write(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
}

/// Moves bytes from `src` to `dst` until `src` ends, an error, or (with `route`) a drain.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    mode: RelayMode,
    route: Option<&Route>,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> io::Result<PumpEnd> {
    let mut splicing = mode == RelayMode::Splice;
    let mut splice_refused = false;
    loop {
        match route {
            Some(r) => tokio::select! {
                biased;
                _ = r.drained() => return Ok(PumpEnd::Drained),
                ready = src.readable() => ready?,
            },
            None => src.readable().await?,
        }
        if splicing && !splice_refused {
            // A pipe only for the length of the burst: idle sessions hold none.
            if let Some(mut pipe) = Pipe::take() {
                let burst = splice_burst(src, dst, &mut pipe, dir, route, clocks, counter).await;
                pipe.give_back();
                match burst {
                    Ok(Burst::Idle { bulk }) => {
                        if mode == RelayMode::Auto && !bulk {
                            splicing = false;
                        }
                        continue;
                    }
                    Ok(Burst::End(e)) => return Ok(e),
                    // Some socket types (or kernels) refuse splice: copy from now on.
                    Err(e) if is_splice_refused(&e) => splice_refused = true,
                    Err(e) => return Err(e),
                }
            }
        }
        match copy_burst(src, dst, dir, mode, route, clocks, counter).await? {
            Burst::Idle { bulk } => {
                if bulk && mode == RelayMode::Auto && !splice_refused {
                    splicing = true;
                }
            }
            Burst::End(e) => return Ok(e),
        }
    }
}

/// How a burst (reads until the socket would block) ended.
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
    slot.store(clocks.now(), Ordering::Release);
}

async fn copy_burst(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    mode: RelayMode,
    route: Option<&Route>,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> io::Result<Burst> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut full_reads = 0;
    loop {
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(Burst::End(PumpEnd::Eof)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Burst::Idle { bulk: false })
            }
            Err(e) => return Err(e),
        };
        if route.is_some_and(|r| r.is_drained()) {
            return Ok(Burst::End(PumpEnd::Drained));
        }
        if dir == Dir::BackendToClient {
            // A reply is arriving: the drain rule counts it from the read, not the write, so a
            // slow client cannot make a finished reply look outstanding.
            clocks.last_reply.store(clocks.now(), Ordering::Release);
        }
        if let Some(end) = write_all(dst, &buf[..n], route).await? {
            return Ok(Burst::End(end));
        }
        note_progress(dir, clocks, counter, n);
        if n == buf.len() {
            full_reads += 1;
            if mode == RelayMode::Auto && full_reads >= BULK_READS {
                return Ok(Burst::Idle { bulk: true });
            }
        } else {
            full_reads = 0;
        }
    }
}

/// Writes all of `data`; with a route, gives up as soon as it drains (what is left of the
/// chunk is never forwarded).
async fn write_all(
    dst: &TcpStream,
    mut data: &[u8],
    route: Option<&Route>,
) -> io::Result<Option<PumpEnd>> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match route {
                Some(r) => tokio::select! {
                    biased;
                    _ = r.drained() => return Ok(Some(PumpEnd::Drained)),
                    ready = dst.writable() => ready?,
                },
                None => dst.writable().await?,
            },
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

async fn splice_burst(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &mut Pipe,
    dir: Dir,
    route: Option<&Route>,
    clocks: &Clocks,
    counter: &AtomicU64,
) -> io::Result<Burst> {
    let mut burst = 0usize;
    loop {
        let n = match src.try_io(Interest::READABLE, || {
            pipe.splice_in(src.as_raw_fd(), PIPE_CAPACITY)
        }) {
            Ok(0) => return Ok(Burst::End(PumpEnd::Eof)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Burst::Idle {
                    bulk: burst >= PIPE_CAPACITY,
                })
            }
            Err(e) => return Err(e),
        };
        burst += n;
        if dir == Dir::BackendToClient {
            clocks.last_reply.store(clocks.now(), Ordering::Release);
        }
        // Empty the pipe before splicing in again, so `pending` stays exact and a slow peer
        // bounds what this session holds to one pipe.
        while pipe.pending > 0 {
            if route.is_some_and(|r| r.is_drained()) {
                return Ok(Burst::End(PumpEnd::Drained));
            }
            match dst.try_io(Interest::WRITABLE, || pipe.splice_out(dst.as_raw_fd())) {
                Ok(_) => {}
                // Bytes are in the pipe now: a refusal here must end the session, not fall back
                // to copying (which would lose them).
                Err(e) if is_splice_refused(&e) => return Err(io::Error::other(e)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match route {
                    Some(r) => tokio::select! {
                        biased;
                        _ = r.drained() => return Ok(Burst::End(PumpEnd::Drained)),
                        ready = dst.writable() => ready?,
                    },
                    None => dst.writable().await?,
                },
                Err(e) => return Err(e),
            }
        }
        note_progress(dir, clocks, counter, n);
    }
}
