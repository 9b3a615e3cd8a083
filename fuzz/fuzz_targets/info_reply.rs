//! Fuzzes what a health check does with the bytes a backend sends back: RESP framing
//! (`take_frame`) and the `INFO replication` parser (`parse_info_reply`, `parse_info_text`).
//!
//! Checked on every input, beyond "does not panic":
//! - framing consumes exactly one frame off the front and leaves the rest untouched;
//! - "need more bytes" is only ever answered while the buffer is within `MAX_REPLY_BYTES`, and
//!   padding an incomplete reply past that bound ends in an error, never in more waiting, so a
//!   peer that streams garbage cannot make a check hold an unbounded buffer;
//! - a reply that arrives in two reads frames the same as one that arrives whole;
//! - any reply up to `MAX_REPLY_BYTES` frames within the stack of a tokio worker thread (2 MiB),
//!   where the checks run: short inputs are repeated up to that bound (`*1\r\n` repeated is a
//!   32 KiB reply nested 8192 deep) and framed on a thread with that stack;
//! - a successful parse reports the role, replication id and offset that the text's own
//!   `role:`, `master_replid:` and `master_repl_offset:` lines say (checked by a separate
//!   line scan), and re-parsing the parse's canonical rendering gives the same result.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redis_master_proxy::redis::info::{parse_info_reply, parse_info_text, ReplicationInfo, Role};
use redis_master_proxy::redis::resp::{take_frame, ReplyError, ServerError, MAX_REPLY_BYTES};
use redis_protocol::resp2::types::OwnedFrame;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// tokio's default worker thread stack; health checks and sentinel subscriptions frame replies
/// on such threads.
const WORKER_STACK: usize = 2 * 1024 * 1024;
/// Inputs up to this long are also checked repeated up to `MAX_REPLY_BYTES`.
const REPEAT_MAX_INPUT: usize = 16;

fuzz_target!(|data: &[u8]| {
    let whole = frame_once(data);
    check_framing(data, &whole);
    check_split_reads(data, &whole);
    if let (Ok(None), true) = (&whole.result, data.len() <= MAX_REPLY_BYTES) {
        check_bounded_wait(data);
    }
    if let Ok(Some(frame)) = &whole.result {
        check_reply(frame);
    }
    if !data.is_empty() && data.len() <= REPEAT_MAX_INPUT {
        frame_on_worker_stack(data.repeat(MAX_REPLY_BYTES / data.len()));
    }
    // The body parser on its own, on the raw bytes.
    if let Ok(info) = parse_info_text(data) {
        check_info(data, &info);
    }
});

/// One `take_frame` call and the buffer it left.
struct Framed {
    result: Result<Option<OwnedFrame>, ReplyError>,
    rest: BytesMut,
}

fn frame_once(data: &[u8]) -> Framed {
    let mut buf = BytesMut::from(data);
    let result = take_frame(&mut buf);
    Framed { result, rest: buf }
}

fn check_framing(data: &[u8], f: &Framed) {
    match &f.result {
        Ok(Some(_)) => {
            let used = data.len() - f.rest.len();
            assert!(used > 0, "a frame was taken without consuming a byte");
            assert_eq!(&f.rest[..], &data[used..], "bytes after the frame changed");
        }
        Ok(None) => {
            assert!(
                data.len() <= MAX_REPLY_BYTES,
                "asked for more bytes while already holding {} (bound {MAX_REPLY_BYTES})",
                data.len()
            );
            assert_eq!(&f.rest[..], data, "an incomplete reply was consumed");
        }
        Err(ReplyError::Oversized) => assert!(
            data.len() > MAX_REPLY_BYTES,
            "oversized at {} bytes, within the bound",
            data.len()
        ),
        Err(_) => {}
    }
}

/// The same bytes delivered in two reads, split at a few places: a check reads whatever the
/// socket has, so where a read ends must not change the outcome.
fn check_split_reads(data: &[u8], whole: &Framed) {
    if data.len() < 2 {
        return;
    }
    for cut in [1, data.len() / 2, data.len() - 1] {
        let mut buf = BytesMut::from(&data[..cut]);
        match take_frame(&mut buf) {
            Ok(Some(frame)) => {
                // A frame complete within the first read is the one the whole input starts with.
                let used = cut - buf.len();
                match &whole.result {
                    Ok(Some(w)) => {
                        assert_eq!(&frame, w, "cut {cut}: a prefix framed differently");
                        assert_eq!(used, data.len() - whole.rest.len(), "cut {cut}: length");
                    }
                    other => panic!("cut {cut}: prefix framed {frame:?}, whole input {other:?}"),
                }
            }
            Ok(None) => {
                buf.extend_from_slice(&data[cut..]);
                let second = take_frame(&mut buf);
                match (&second, &whole.result) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a, b, "cut {cut}: two reads framed differently");
                        assert_eq!(buf, whole.rest, "cut {cut}: different rest");
                    }
                    (Err(_), Err(_)) => {}
                    (a, b) => panic!("cut {cut}: two reads gave {a:?}, one read {b:?}"),
                }
            }
            Err(ReplyError::Oversized) => assert!(cut > MAX_REPLY_BYTES, "cut {cut}: oversized"),
            // A prefix already in error: a check would give up there. That is only right when
            // the whole input is refused too.
            Err(e) => assert!(
                whole.result.is_err(),
                "cut {cut}: the first read was refused ({e}) but the whole reply frames"
            ),
        }
    }
}

/// Frames `reply` on a thread with a tokio worker's stack. A stack overflow there aborts the
/// process, which libFuzzer reports as a crash with this input.
fn frame_on_worker_stack(reply: Vec<u8>) {
    type Worker = (mpsc::Sender<Vec<u8>>, mpsc::Receiver<()>);
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (to_worker, inputs) = mpsc::channel::<Vec<u8>>();
        let (done, from_worker) = mpsc::channel();
        std::thread::Builder::new()
            .name("worker-stack".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                catch_stack_overflow();
                for reply in inputs {
                    let mut buf = BytesMut::from(&reply[..]);
                    // Framing and dropping the frame both walk its depth.
                    drop(take_frame(&mut buf));
                    if done.send(()).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn the worker-stack thread");
        Mutex::new((to_worker, from_worker))
    });
    let w = worker.lock().expect("worker lock");
    w.0.send(reply).expect("worker-stack thread alive");
    w.1.recv().expect("worker-stack thread alive");
}

/// Makes a stack overflow on the worker-stack thread a crash that libFuzzer records.
///
/// libFuzzer passes SIGSEGV on to the handler the Rust runtime installed, which does not know
/// this thread's guard page (libFuzzer's `main` skips the runtime's start-up) and lets the
/// process die without saving the input. Instead: an alternate signal stack for this thread,
/// and a SIGSEGV handler that aborts, which libFuzzer handles by saving the input.
fn catch_stack_overflow() {
    const SIZE: usize = 256 * 1024;
    let mem: &'static mut [u8] = Box::leak(vec![0u8; SIZE].into_boxed_slice());
    let st = libc::stack_t {
        ss_sp: mem.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: SIZE,
    };
    // SAFETY: `st` describes leaked memory, valid and used by nothing else for the life of the
    // process; a null old-stack pointer is allowed.
    let rc = unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaltstack failed");

    extern "C" fn on_segv(_: libc::c_int) {
        let msg = b"\n== SIGSEGV, most likely a stack overflow on the worker-sized stack\n";
        // SAFETY: write(2) and abort(3) are async-signal-safe; `msg` is a valid buffer.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in; the handler only calls
    // async-signal-safe functions, and SA_ONSTACK runs it on the stack installed above.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_segv as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut())
    };
    assert_eq!(rc, 0, "sigaction failed");
}

/// An incomplete reply padded past the bound must end in an answer or an error: the reader
/// never keeps waiting while holding more than `MAX_REPLY_BYTES`.
fn check_bounded_wait(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    buf.resize(MAX_REPLY_BYTES + 1, b'x');
    let r = take_frame(&mut buf);
    assert!(
        !matches!(r, Ok(None)),
        "still waiting for more after {} bytes",
        MAX_REPLY_BYTES + 1
    );
}

fn check_reply(frame: &OwnedFrame) {
    let parsed = parse_info_reply(frame);
    match (frame, &parsed) {
        (OwnedFrame::BulkString(body), Ok(info)) => check_info(body, info),
        (OwnedFrame::BulkString(_), Err(_)) => {}
        (OwnedFrame::Error(e), r) => {
            assert_eq!(r, &Err(ReplyError::Redis(ServerError::new(e.clone()))))
        }
        (_, r) => assert!(
            matches!(r, Err(ReplyError::Protocol(_))),
            "{frame:?} gave {r:?}"
        ),
    }
}

/// What a successful parse reports, checked against a plain scan of the lines (last one wins,
/// as the parser assigns in order).
fn check_info(body: &[u8], info: &ReplicationInfo) {
    let text = std::str::from_utf8(body).expect("a successful parse was given UTF-8");
    let last = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .next_back()
    };
    let role = last("role").expect("a successful parse has a role line");
    let want = match role {
        "master" => Role::Master,
        "slave" | "replica" => Role::Replica,
        other => panic!("parsed with role line `{other}`"),
    };
    assert_eq!(info.role, want);
    assert_eq!(
        Some(info.master_replid.as_str()),
        last("master_replid"),
        "master_replid"
    );
    assert_eq!(
        last("master_repl_offset").map(|v| v.parse::<u64>()),
        Some(Ok(info.master_repl_offset)),
        "master_repl_offset"
    );
    if info.role == Role::Master {
        // previous_replid is what the election's lineage rule reads.
        if let Some(prev) = info.previous_replid() {
            assert!(prev.bytes().any(|b| b != b'0'));
            assert_eq!(prev, info.master_replid2);
        }
    }
    let again = parse_info_text(render(info).as_bytes()).expect("the canonical form parses");
    assert_eq!(&again, info, "re-parsing the canonical form changed it");
}

/// The reply a Redis with this state would send.
fn render(info: &ReplicationInfo) -> String {
    let mut s = String::from("# Replication\r\n");
    let role = match info.role {
        Role::Master => "master",
        Role::Replica => "slave",
    };
    s += &format!("role:{role}\r\n");
    if let Some(h) = &info.master_host {
        s += &format!("master_host:{h}\r\n");
    }
    if let Some(p) = info.master_port {
        s += &format!("master_port:{p}\r\n");
    }
    if let Some(up) = info.master_link_up {
        s += &format!("master_link_status:{}\r\n", if up { "up" } else { "down" });
    }
    s += &format!("connected_slaves:{}\r\n", info.connected_slaves);
    s += &format!("master_replid:{}\r\n", info.master_replid);
    s += &format!("master_replid2:{}\r\n", info.master_replid2);
    s += &format!("master_repl_offset:{}\r\n", info.master_repl_offset);
    s
}
