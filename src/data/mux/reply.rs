//! Sans-IO: where each RESP2 reply on a shared connection ends.
//!
//! A shared connection speaks RESP2 (nothing that switches it to RESP3 is ever sent on one) and
//! is never subscribed or monitoring, so every command gets exactly one reply, and replies come
//! in command order: counting complete replies is enough to route each back to its client. The
//! scanner only finds boundaries; reply bytes are passed on untouched. It resumes where it
//! stopped, so a large reply (an `LRANGE` of a million elements, a 16 MiB bulk) arriving over
//! many reads is scanned once.

/// Result of one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The first reply in the buffer is complete and this long.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    /// Not RESP2: the connection cannot be trusted any more.
    Invalid,
}

/// Resumable scanner of one reply at a time. Feed it the buffer from the start of the current
/// reply; after [`Scan::Complete`], drop those bytes (or pass the rest).
#[derive(Debug, Default)]
pub struct Scanner {
    /// Where the next element starts.
    pos: usize,
    /// Elements still expected by each open array, innermost last.
    open: Vec<i64>,
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(from + i)
}

fn number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

impl Scanner {
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Scan::Incomplete;
            };
            let Some(eol) = line_end(buf, self.pos + 1) else {
                return Scan::Incomplete;
            };
            let next = eol + 2;
            match kind {
                b'+' | b'-' | b':' => self.pos = next,
                b'$' => match number(&buf[self.pos + 1..eol]) {
                    Some(-1) => self.pos = next,
                    Some(n) if n >= 0 => {
                        let end = next + n as usize;
                        match buf.get(end..end + 2) {
                            None => return Scan::Incomplete,
                            Some(b"\r\n") => self.pos = end + 2,
                            Some(_) => return Scan::Invalid,
                        }
                    }
                    _ => return Scan::Invalid,
                },
                b'*' => match number(&buf[self.pos + 1..eol]) {
                    Some(n) if n > 0 => {
                        self.pos = next;
                        self.open.push(n);
                        continue;
                    }
                    Some(-1 | 0) => self.pos = next,
                    _ => return Scan::Invalid,
                },
                _ => return Scan::Invalid,
            }
            // An element is complete: close the arrays it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Scan::Complete(len);
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::encode::encode;
    use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};

    fn frames() -> Vec<OwnedFrame> {
        use OwnedFrame::*;
        vec![
            SimpleString(b"OK".to_vec()),
            Error("ERR wrong number of arguments".into()),
            Integer(-42),
            BulkString(b"hello\r\nworld".to_vec()),
            BulkString(Vec::new()),
            Null,
            Array(Vec::new()),
            Array(vec![
                BulkString(b"a".to_vec()),
                Array(vec![
                    Integer(1),
                    Null,
                    Array(vec![SimpleString(b"x".to_vec())]),
                ]),
                Array(Vec::new()),
            ]),
            BulkString(vec![b'*'; 70_000]),
        ]
    }

    /// Boundaries found by the scanner match those of the frames encoded by redis-protocol,
    /// whatever the split of the stream into reads.
    #[test]
    fn finds_every_reply_boundary_across_every_split() {
        let frames = frames();
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for f in &frames {
            let mut b = vec![0u8; f.encode_len(false)];
            let n = encode(&mut b, f, false).unwrap();
            stream.extend_from_slice(&b[..n]);
            ends.push(stream.len());
        }
        stream.extend_from_slice(b"$-1\r\n*-1\r\n");
        ends.push(ends.last().unwrap() + 5);
        ends.push(ends.last().unwrap() + 5);
        for chunk in [1, 2, 3, 7, 64, 4096, stream.len()] {
            let mut s = Scanner::default();
            let mut start = 0;
            let mut avail = 0;
            let mut got = Vec::new();
            while start < stream.len() {
                match s.scan(&stream[start..avail]) {
                    Scan::Complete(n) => {
                        start += n;
                        got.push(start);
                    }
                    Scan::Incomplete => avail = (avail + chunk).min(stream.len()),
                    Scan::Invalid => panic!("invalid at {start}"),
                }
            }
            assert_eq!(got, ends, "chunk {chunk}");
        }
    }

    #[test]
    fn refuses_what_is_not_resp2() {
        for bad in [
            &b"%1\r\n"[..],
            b"$x\r\n",
            b"*-2\r\n",
            b"$1\r\nab\r\n",
            b"hello\r\n",
        ] {
            assert_eq!(Scanner::default().scan(bad), Scan::Invalid, "{bad:?}");
        }
    }
}
