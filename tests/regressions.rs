//! Regression tests for bugs found by fuzzing (`fuzz/`, `scripts/fuzz.sh`) and by the property
//! tests. Each test keeps the smallest input that showed the bug, says which property it broke,
//! and where; docs/fuzzing.md describes how a crash becomes one of these.
//!
//! Every test here passes on main: a bug is committed here together with its fix.

use std::process::Command;

use bytes::BytesMut;
use redis_master_proxy::redis::info::parse_info_reply;
use redis_master_proxy::redis::resp::{take_frame, MAX_REPLY_BYTES};

/// tokio's default worker thread stack. Health checks and sentinel subscriptions read and frame
/// replies on these threads (`client::read_frame` → `resp::take_frame`).
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Set in the child process that runs a test body which may abort the process.
const CHILD: &str = "RMP_REGRESSION_CHILD";

/// Runs the test `name` of this file again in a child process and returns whether it succeeded,
/// with its stderr. A stack overflow aborts the whole process, so it is observed from outside;
/// that way it fails one test with a message instead of killing the test binary.
fn run_in_child(name: &str) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--exact", name, "--include-ignored", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary again");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let tail: String = stderr
        .lines()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success(), format!("{}: {tail}", out.status))
}

/// Frames `reply` on a thread with a worker's stack and returns whether it parsed as an
/// `INFO replication` answer.
fn frame_on_worker_stack(reply: Vec<u8>) -> bool {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let mut buf = BytesMut::from(&reply[..]);
            match take_frame(&mut buf) {
                Ok(Some(frame)) => parse_info_reply(&frame).is_ok(),
                Ok(None) | Err(_) => false,
            }
        })
        .expect("spawn a thread")
        .join()
        .expect("the framing thread panicked")
}

/// Found by the `info_reply` fuzz target (input `*2\r\n`, repeated up to `MAX_REPLY_BYTES`);
/// fixed by refusing nesting deeper than `resp::MAX_NESTING` before decoding.
///
/// A backend, or anything else answering on a backend's or a sentinel's address, that replies
/// with RESP arrays nested a few thousand deep kills the whole proxy: `resp::take_frame` hands
/// the bytes to `redis_protocol::resp2::decode::decode`, which recurses once per nesting level
/// with no limit, and overflows the 2 MiB stack of the tokio worker running the check
/// ("thread 'tokio-rt-worker' has overflowed its stack", SIGABRT). `*1\r\n` repeated 8192
/// times is a 32 KiB reply, well inside `MAX_REPLY_BYTES`, so the size bound does not help.
/// Every client session ends with the process; restarted, it dies again at its first check.
///
/// Property broken: any reply up to `MAX_REPLY_BYTES` is framed, or refused with an error,
/// without exhausting a worker's stack. Real replies to AUTH, INFO, SENTINEL and SUBSCRIBE nest
/// at most two levels, so refusing deep nesting before decoding (without recursion) loses
/// nothing.
#[test]
fn deeply_nested_reply_is_refused_without_overflowing_a_worker_stack() {
    if std::env::var_os(CHILD).is_some() {
        // A complete reply, 8192 arrays deep around one integer (32 KiB).
        let mut complete = b"*1\r\n".repeat(8192);
        complete.extend_from_slice(b":1\r\n");
        // The fuzzer's input: `*2\r\n` up to the bound, a reply still incomplete.
        let incomplete = b"*2\r\n".repeat(MAX_REPLY_BYTES / 4);
        for reply in [complete, incomplete] {
            assert!(reply.len() <= MAX_REPLY_BYTES);
            assert!(
                !frame_on_worker_stack(reply),
                "a nested array parsed as INFO"
            );
        }
        return;
    }
    let (ok, detail) =
        run_in_child("deeply_nested_reply_is_refused_without_overflowing_a_worker_stack");
    assert!(
        ok,
        "framing a deeply nested reply on a {WORKER_STACK}-byte stack killed the process: {detail}"
    );
}

/// Found by the `info_reply` fuzz target (a 37-byte reply nested three deep, followed by arrays
/// nested five deep), reduced here by hand; fixed: the nesting check stops at the end of the
/// first frame.
///
/// `resp::take_frame` ran `check_nesting` over the whole buffer, past the end of the first
/// frame, so a complete, shallow reply is refused ("arrays nested deeper than 4") when the bytes
/// that follow it in the same read nest deeper. Delivered in two reads, the same bytes give the
/// reply first and the error after it: the outcome depends on where a TCP read ends. Here
/// `+OK\r\n` followed by five nested arrays must give `+OK` and leave the rest in the buffer.
///
/// Property broken (`info_reply`, split reads): a frame complete within the first bytes is the
/// frame the whole buffer starts with. `check_nesting` now stops once the first top-level element
/// is complete (when the stack of open arrays empties).
#[test]
fn reply_is_framed_whatever_follows_it_in_the_buffer() {
    let mut bytes = b"+OK\r\n".to_vec();
    let after = [b"*1\r\n".repeat(5), b":1\r\n".to_vec()].concat();
    bytes.extend_from_slice(&after);

    let mut first_read = BytesMut::from(&b"+OK\r\n"[..]);
    let alone = take_frame(&mut first_read);
    assert!(matches!(alone, Ok(Some(_))), "alone: {alone:?}");

    let mut buf = BytesMut::from(&bytes[..]);
    let together = take_frame(&mut buf);
    assert_eq!(
        together, alone,
        "with deeper bytes after it in the same read"
    );
    assert_eq!(&buf[..], &after[..], "the bytes after the reply are kept");
    assert!(
        take_frame(&mut buf).is_err(),
        "the deep arrays are refused in turn"
    );
}

/// The same check on replies a Redis really sends, so the test above fails for the nesting
/// alone and keeps passing once deep nesting is refused.
#[test]
fn shallow_replies_frame_on_a_worker_stack() {
    let info = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:5d1d8004c9b84506f794392f163e313726193d45\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:50\r\n";
    let reply = format!("${}\r\n{info}\r\n", info.len()).into_bytes();
    assert!(frame_on_worker_stack(reply));
    // A SENTINEL get-master-addr-by-name answer and a pub/sub message: arrays, one level.
    for reply in [
        &b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"[..],
        b"*3\r\n$7\r\nmessage\r\n$5\r\n+sdown\r\n$30\r\nmaster mymaster 127.0.0.1 6379\r\n",
    ] {
        assert!(!frame_on_worker_stack(reply.to_vec()), "not an INFO reply");
    }
}

/// Found by the `config` fuzz target: a backend "host" of a few hundred single quotes parsed,
/// and `check` then printed it through the TOML writer, whose quote counter is a `u8`: 256
/// quotes in a row overflowed it (a panic in debug builds, a wrongly quoted string that does not
/// parse back in release builds).
///
/// Property broken: what `check` prints for a valid config parses again. Host names are now
/// checked (letters, digits, `-`, `_`, `.`, IP literals; at most 253 bytes) and the other free
/// strings have length limits under 256, so no such string reaches the writer.
#[test]
fn host_names_with_quotes_are_refused() {
    let host = format!("12{}7.0.{}", "'".repeat(300), "'".repeat(300));
    let text = format!("backends = [\"{host}:6379\"]\n");
    let err = redis_master_proxy::config::Config::parse(&text, "fuzz.toml", &Default::default())
        .expect_err("a host of quotes is not a host");
    assert!(err.to_string().contains("not a host name"), "{err}");
}

/// Found by the `config` fuzz target: `[health] interval = "44444200ms"` (12.3 h) was accepted,
/// and the `health.down_after` that follows an unset one (twice the interval, 24.7 h) was then
/// printed by `check` as `down_after = "88888400ms"`, which does not parse back: every
/// duration is at most 24 h.
///
/// Property broken: what `check` prints for a valid config parses again. `health.interval` is
/// now at most 1 h (`config::MAX_INTERVAL`), with an error that names the key; the longest
/// interval allowed gives a `down_after` that reads back.
#[test]
fn a_long_health_interval_is_refused_and_the_longest_one_reads_back() {
    use redis_master_proxy::config::Config;
    let parse = |text: &str| Config::parse(text, "fuzz.toml", &Default::default());
    let err = parse("backends = [\"a:1\"]\n[health]\ninterval = \"44444200ms\"\n")
        .expect_err("a 12 h interval is refused");
    assert!(err.to_string().contains("health.interval"), "{err}");
    let longest = parse("backends = [\"a:1\"]\n[health]\ninterval = \"60m\"\ntimeout = \"1s\"\n")
        .expect("a 1 h interval is accepted");
    let shown = longest.to_toml();
    let again = parse(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(again.to_toml(), shown);
}
