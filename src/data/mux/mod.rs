//! `mode = "multiplex"`: clients share a few backend connections per data-path thread, as long
//! as what they send carries no connection state.
//!
//! A multiplexed session frames the client's requests ([`request`]) and classifies each command
//! ([`classify`], from Redis's own command table, [`commands`]). Commands that share are handed,
//! one batch per read, to a shared connection of this thread ([`pool`]), which writes many
//! clients' commands per `writev` and routes replies back in order ([`reply`]). Redis then
//! reads and answers many commands per system call instead of one, which is where a direct
//! connection spends most of its CPU.
//!
//! # Pinning
//! The first command that pins (a transaction, a blocking command, a subscription, `CLIENT`,
//! `SELECT` to another database, `AUTH`, `HELLO` with options, a script, an unknown command, a request the
//! parser does not frame exactly as Redis would, …) ends multiplexing for that client: once the
//! replies of the commands it already sent are delivered, the session connects a backend
//! connection of its own, writes the bytes it has read from that command on, and relays 1:1
//! ([`crate::data::relay`]) for the rest of the session. Pinning lasts: the state such commands set
//! (a database, a name, a subscription, a user) is Redis's, and only the connection that set it
//! holds it; following it back to neutral would mean mirroring Redis's rules for it.
//!
//! # Protocols
//! A client starts in RESP2. `HELLO 3` (no options) moves it to this thread's RESP3 shared
//! connections, `HELLO 2` back to the RESP2 ones; the `HELLO` itself is answered by the
//! connection it moves to, so its reply is in the protocol the client asked for, and so is every
//! reply after it. Commands sent before it may still be in flight on the other protocol's
//! connection: the session stops reading at the `HELLO` until they are answered, so the
//! client's commands still run, and are answered, in its order. A client pinned after `HELLO 3`
//! gets its own connection switched to RESP3 before its pinning command is written.
//!
//! When the master requires `AUTH` (a `PING` on a fresh connection answers `-NOAUTH`, asked once
//! per route and thread), every client is pinned from its first command: shared connections are
//! never authenticated, so a client never gets more than its own credentials give it.
//!
//! # Failover
//! Pinned sessions are 1:1 sessions and drain as such (they close). Unpinned clients stay
//! connected: commands in flight when their route drains get Redis's replies (graceful drain)
//! or [`pool::ERR_LOST`] (immediate); commands sent afterwards go to the new master.

pub mod classify;
pub mod commands;
pub mod pool;
pub mod reply;
pub mod request;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::data::listener::{self, DataPath, Settings};
use crate::metrics as m;
use crate::routing::{DrainSignal, Route};
use classify::{classify, Class, Protocol};
use pool::{Batch, Replies};
use request::{Parser, Step};

/// Read buffer of a client session, to start with.
const CLIENT_BUFFER: usize = 16 * 1024;
/// Replies gathered into one `writev` to a client.
const MAX_IOV: usize = 64;

/// Why a session stopped reading its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// A command pins: relay from here once the replies in flight are delivered.
    Pin,
    /// The client half-closed: deliver the replies in flight, then close.
    Eof,
    /// The proxy is shutting down: deliver the replies in flight, then close.
    Shutdown,
}

/// One multiplexed client session from accept to close.
pub(crate) async fn serve(
    mut client: TcpStream,
    dp: &Arc<DataPath>,
    settings: &Settings,
    stop: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Replies>();
    // The protocol the client speaks, and so the shared connections its commands go to.
    let mut protocol = Protocol::Resp2;
    // Its slot per protocol (RESP2, RESP3), once it has sent a command in it.
    let mut slots: [Option<mpsc::UnboundedSender<Batch>>; 2] = [None, None];
    // Whether the master was asked if shared connections may serve this client.
    let mut probed = false;
    // Whether the master knows `classify::IF_UNKNOWN` (asked with the probe).
    let mut master_knows = false;
    // A `HELLO` that changes the client's protocol was framed: reading waits until the replies
    // to its commands before it are delivered (they run on the other protocol's connection).
    let mut switching = false;
    let mut inbuf = BytesMut::with_capacity(CLIENT_BUFFER);
    let mut parser = Parser::default();
    let mut out: VecDeque<Bytes> = VecDeque::new();
    let mut out_written = 0usize;
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut stopped: Option<Stop> = None;
    // A backend connection the probe opened for this client, when it must be pinned.
    let mut own: Option<(Arc<Route>, TcpStream)> = None;
    // Shared by every session: polled through an atomic, not the token's lock.
    let stopping = DrainSignal::new(stop.clone());
    tokio::pin!(stopping);
    loop {
        if let Some(why) = stopped {
            if answered == sent && out.is_empty() {
                match why {
                    Stop::Pin => {
                        return pin(client, inbuf, own, protocol, dp, settings, stop).await
                    }
                    Stop::Eof => {
                        let _ = client.shutdown().await;
                        return;
                    }
                    Stop::Shutdown => return,
                }
            }
        }
        // The commands before a `HELLO` that changes protocol are answered: frame the rest of
        // the buffer (from the `HELLO`) without waiting for the client to send more.
        let resume = switching && stopped.is_none() && answered == sent;
        if !resume {
            if inbuf.capacity() - inbuf.len() < 1024 {
                inbuf.reserve(CLIENT_BUFFER);
            }
            let (mut cr, mut cw) = client.split();
            let read = tokio::select! {
                biased;
                m = rx.recv() => {
                    if let Some(m) = m {
                        answered += m.count;
                        out.push_back(m.bytes);
                    }
                    continue;
                }
                res = write_some(&mut cw, &out, out_written), if !out.is_empty() => {
                    match res {
                        Ok(n) => advance(&mut out, &mut out_written, n),
                        Err(_) => return,
                    }
                    continue;
                }
                res = cr.read_buf(&mut inbuf), if stopped.is_none() && !switching => res,
                _ = &mut stopping, if stopped.is_none() => {
                    stopped = Some(Stop::Shutdown);
                    continue;
                }
            };
            match read {
                Ok(0) => {
                    stopped = Some(Stop::Eof);
                    continue;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        switching = false;
        if !probed {
            match probe(dp, settings, &stop).await {
                Probe::Share(knows) => {
                    probed = true;
                    master_knows = knows;
                }
                Probe::Pin(conn) => {
                    // Nothing was sent: the whole buffer goes to the client's own connection.
                    own = conn;
                    stopped = Some(Stop::Pin);
                    continue;
                }
                Probe::Gone => return,
            }
        }
        // Frame what arrived: commands that share go out as one batch; the first that pins
        // stops reading, and so does a `HELLO` that changes protocol after commands in the
        // other one.
        let mut len = 0;
        let mut count = 0;
        loop {
            match parser.next(&inbuf[len..]) {
                Step::Command(c) => {
                    let cmd = &inbuf[len..];
                    let arg1 = c.arg1.clone().map(|r| &cmd[r]);
                    match classify(&cmd[c.name.clone()], c.argc, arg1) {
                        Class::Share | Class::Hello(None) => {}
                        Class::IfUnknown if !master_knows => {}
                        Class::Hello(Some(p)) if p == protocol => {}
                        Class::Hello(Some(p)) => {
                            if count > 0 || answered != sent {
                                switching = true;
                                break;
                            }
                            // It goes to a connection that speaks `p`, and answers in `p`.
                            protocol = p;
                        }
                        Class::Pin | Class::IfUnknown => {
                            stopped = Some(Stop::Pin);
                            break;
                        }
                    }
                    len += c.len;
                    count += 1;
                }
                Step::Skip(n) => len += n,
                Step::Incomplete => break,
                Step::Unframed => {
                    stopped = Some(Stop::Pin);
                    break;
                }
            }
        }
        if count == 0 {
            // Only requests Redis would not answer (empty lines, `*0`), or none before a
            // `HELLO` that waits: nothing to send.
            let _ = inbuf.split_to(len);
            continue;
        }
        let target = slots[protocol as usize]
            .get_or_insert_with(|| pool::slot(dp, protocol, &stop))
            .clone();
        let batch = Batch {
            bytes: inbuf.split_to(len).freeze(),
            count,
            reply: tx.clone(),
            queued: tokio::time::Instant::now(),
        };
        sent += count;
        if target.send(batch).is_err() {
            return;
        }
    }
}

/// Marks `n` bytes of `out` written.
fn advance(out: &mut VecDeque<Bytes>, written: &mut usize, mut n: usize) {
    while n > 0 {
        let Some(front) = out.front() else { return };
        let take = n.min(front.len() - *written);
        *written += take;
        n -= take;
        if *written == front.len() {
            out.pop_front();
            *written = 0;
        }
    }
}

async fn write_some(
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    out: &VecDeque<Bytes>,
    written: usize,
) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let mut n = 0;
    for (i, b) in out.iter().take(MAX_IOV).enumerate() {
        slices[i] = IoSlice::new(if i == 0 { &b[written..] } else { &b[..] });
        n = i + 1;
    }
    match w.write_vectored(&slices[..n]).await {
        Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
        r => r,
    }
}

/// Pins the client: its own backend connection (the probe's, this thread's spare, or a new
/// one), switched to RESP3 first when the client had switched, the bytes read from the pinning
/// command on written next, then the 1:1 relay for the rest of the session.
async fn pin(
    client: TcpStream,
    replay: BytesMut,
    mut own: Option<(Arc<Route>, TcpStream)>,
    protocol: Protocol,
    dp: &Arc<DataPath>,
    settings: &Settings,
    stop: CancellationToken,
) {
    metrics::counter!(m::MUX_PINNED).increment(1);
    let mut spare = own.is_none();
    loop {
        let from_spare = spare;
        let taken = match own.take() {
            Some(c) => Some(c),
            None if spare => {
                spare = false;
                take_spare(dp, settings)
            }
            None => None,
        };
        let (route, mut backend) = match taken {
            Some(c) => c,
            None => match listener::connect(dp, settings, &stop).await {
                Some(c) => c,
                None => return,
            },
        };
        if !replay.is_empty() || protocol == Protocol::Resp3 {
            route.wait_open().await;
            if route.is_drained() {
                // Nothing was written to it: the next route gets the bytes.
                continue;
            }
            if protocol == Protocol::Resp3 {
                // The client's `HELLO 3` went to a shared connection: its own connection is
                // switched as that one was, and the reply, already answered, is not passed on.
                if pool::switch_to_resp3(&mut backend, settings.connect_timeout)
                    .await
                    .is_err()
                {
                    if from_spare {
                        continue;
                    }
                    return;
                }
            }
            if !replay.is_empty() && backend.write_all(&replay).await.is_err() {
                if from_spare {
                    // A spare the master closed as it was taken: it read nothing.
                    continue;
                }
                return;
            }
        }
        return listener::relay_session(client, &route, backend, settings).await;
    }
}

thread_local! {
    /// A master connection this thread opened ahead of its next pin: (data path, route,
    /// connection). With it, a pinning command is written to the master as soon as it is read,
    /// as the 1:1 relay writes it, instead of after a connect during which commands another
    /// client sends next would overtake it on a shared connection (a test that sends a
    /// blocking command on one connection and then, without waiting, the write that wakes it
    /// on another, relies on that order).
    static SPARE: RefCell<Option<(usize, Arc<Route>, TcpStream)>> = const { RefCell::new(None) };
    /// Whether a spare is being connected.
    static REFILLING: Cell<bool> = const { Cell::new(false) };
}

/// This thread's spare connection, when it is to the current route and still open; another is
/// opened in the background for the next pin.
fn take_spare(dp: &Arc<DataPath>, settings: &Settings) -> Option<(Arc<Route>, TcpStream)> {
    let key = Arc::as_ptr(dp) as usize;
    let current = dp.table.load();
    let spare = SPARE.with(|s| s.borrow_mut().take());
    if spare.is_some() {
        metrics::gauge!(m::MUX_POOLED).decrement(1.0);
    }
    let usable = spare.filter(|(k, route, stream)| {
        *k == key
            && current.as_ref().is_some_and(|c| c.epoch == route.epoch)
            && !route.is_drained()
            && open(stream)
    });
    if let Some(route) = current {
        refill(key, route, settings.connect_timeout);
    }
    usable.map(|(_, route, stream)| (route, stream))
}

/// Whether an idle connection is still open: nothing to read yet (the master never writes to
/// a connection that sent nothing; end of file or bytes mean it cannot be used).
fn open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Connects this thread's next spare to `route`, in the background.
fn refill(key: usize, route: Arc<Route>, connect_timeout: std::time::Duration) {
    if REFILLING.with(|r| r.replace(true)) {
        return;
    }
    tokio::spawn(async move {
        let connected = tokio::time::timeout(connect_timeout, TcpStream::connect(route.addr)).await;
        REFILLING.with(|r| r.set(false));
        let Ok(Ok(stream)) = connected else { return };
        if route.is_drained() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let old = SPARE.with(|s| s.borrow_mut().replace((key, route, stream)));
        if old.is_none() {
            metrics::gauge!(m::MUX_POOLED).increment(1.0);
        }
    });
}

/// Whether this client's commands may share connections.
enum Probe {
    /// Share; whether the master knows [`classify::IF_UNKNOWN`].
    Share(bool),
    /// Pin, on this connection when the probe opened one that is clean to reuse.
    Pin(Option<(Arc<Route>, TcpStream)>),
    /// No master within `wait_for_master`: close, as a 1:1 session would.
    Gone,
}

thread_local! {
    /// The last probe's answer on this thread: (data path, route epoch, shareable, whether
    /// the master knows [`classify::IF_UNKNOWN`]).
    static PROBED: Cell<Option<(usize, u64, bool, bool)>> = const { Cell::new(None) };
}

/// `PING` as a client library sends it, then `COMMAND INFO` of [`classify::IF_UNKNOWN`].
const PROBE: &[u8] = b"*1\r\n$4\r\nPING\r\n*3\r\n$7\r\nCOMMAND\r\n$4\r\nINFO\r\n$26\r\nclient|maint_notifications\r\n";
/// `COMMAND INFO`'s answer for a command the master does not know (RESP2).
const UNKNOWN_COMMAND: &[&[u8]] = &[b"*1\r\n$-1\r\n", b"*1\r\n*-1\r\n"];

/// Asks the current master, once per route and thread, whether an unauthenticated connection
/// may run commands (see the module doc), and whether it knows [`classify::IF_UNKNOWN`].
async fn probe(dp: &Arc<DataPath>, settings: &Settings, stop: &CancellationToken) -> Probe {
    let key = Arc::as_ptr(dp) as usize;
    if let Some(route) = dp.table.load() {
        match PROBED.with(Cell::get) {
            Some((k, e, true, knows)) if k == key && e == route.epoch => {
                return Probe::Share(knows)
            }
            Some((k, e, false, _)) if k == key && e == route.epoch => return Probe::Pin(None),
            _ => {}
        }
    }
    let Some((route, mut backend)) = listener::connect(dp, settings, stop).await else {
        return Probe::Gone;
    };
    let answer = tokio::time::timeout(settings.connect_timeout, async {
        let unexpected =
            |k: std::io::ErrorKind| -> std::io::Result<(BytesMut, usize)> { Err(k.into()) };
        backend.write_all(PROBE).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scanner = reply::Scanner::default();
        // Where the first reply ends, once it is complete.
        let mut first = None;
        loop {
            if buf.len() > 64 * 1024 {
                return unexpected(std::io::ErrorKind::InvalidData);
            }
            if backend.read_buf(&mut buf).await? == 0 {
                return unexpected(std::io::ErrorKind::UnexpectedEof);
            }
            loop {
                let from = first.unwrap_or(0);
                match scanner.scan(&buf[from..]) {
                    reply::Scan::Complete(n) if first.is_none() => first = Some(n),
                    reply::Scan::Complete(n) if from + n == buf.len() => return Ok((buf, from)),
                    reply::Scan::Incomplete => break,
                    _ => return unexpected(std::io::ErrorKind::InvalidData),
                }
            }
        }
    })
    .await;
    match answer {
        Ok(Ok((reply, first))) if &reply[..first] == b"+PONG\r\n" => {
            let knows = !UNKNOWN_COMMAND.contains(&&reply[first..]);
            PROBED.with(|p| p.set(Some((key, route.epoch, true, knows))));
            Probe::Share(knows)
        }
        Ok(Ok((reply, _))) => {
            if reply.starts_with(b"-NOAUTH") {
                PROBED.with(|p| p.set(Some((key, route.epoch, false, false))));
            }
            Probe::Pin(Some((route, backend)))
        }
        // The connection's state is unknown: the pinned session opens its own.
        _ => Probe::Pin(None),
    }
}
