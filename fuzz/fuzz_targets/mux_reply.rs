//! Fuzzes where multiplex mode's shared connections cut the master's bytes into replies
//! (`data::mux::reply::Scanner`, RESP2 and RESP3): a wrong cut hands one client another's reply.
//!
//! Checked on every input, beyond "does not panic":
//! - a complete reply is never empty nor longer than the bytes scanned;
//! - the bytes delivered in reads of any size (1, 2, 3, 7 bytes, or whole) cut into the same
//!   replies, and end in the same state (waiting for more, or refused);
//! - where redis-protocol's RESP3 decoder also reads a whole frame at the start of the input,
//!   both agree on its length (an attribute and the value it belongs to are one reply).

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_master_proxy::data::mux::reply::{Scan, Scanner};
use redis_protocol::resp3::decode::complete::decode;

/// The replies `data` cuts into, read `chunk` bytes at a time, and how the scan ended.
fn cuts(data: &[u8], chunk: usize) -> (Vec<usize>, Scan) {
    let mut s = Scanner::default();
    let (mut start, mut avail) = (0, 0);
    let mut ends = Vec::new();
    loop {
        match s.scan(&data[start..avail]) {
            Scan::Complete(n) => {
                assert!(n > 0 && start + n <= avail, "reply of {n} at {start}");
                start += n;
                ends.push(start);
            }
            Scan::Incomplete if avail < data.len() => avail = (avail + chunk).min(data.len()),
            end => return (ends, end),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = cuts(data, data.len().max(1));
    for chunk in [1, 2, 3, 7] {
        assert_eq!(cuts(data, chunk), whole, "reads of {chunk} bytes");
    }
    if let (Some(&first), Ok(Some((_, len)))) = (whole.0.first(), decode(data)) {
        // redis-protocol reads pushes and streamed types the scanner refuses; where both read
        // a frame, it is the same bytes.
        assert_eq!(first, len, "redis-protocol reads a frame of {len}");
    }
});
