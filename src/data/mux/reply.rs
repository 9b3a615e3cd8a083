//! Sans-IO: where each reply on a shared connection ends, in RESP2 or RESP3.
//!
//! A shared connection speaks one protocol for its whole life (RESP2, or RESP3 from the `HELLO 3`
//! it sends when it connects) and is never subscribed, tracking or monitoring, so every command
//! gets exactly one reply, and replies come in command order: counting complete replies is
//! enough to route each back to its client. The scanner only finds boundaries; reply bytes are
//! passed on untouched. It resumes where it stopped, so a large reply (an `LRANGE` of a million
//! elements, a 16 MiB bulk) arriving over many reads is scanned once.
//!
//! Every RESP3 type is framed: maps (`%`, two elements per entry), sets (`~`), attributes (`|`,
//! which precede a reply and belong to it: they are not a reply of their own), big numbers
//! (`(`), doubles (`,`), booleans (`#`), nulls (`_`), verbatim strings (`=`) and blob errors
//! (`!`). A push (`>`) is never a reply: on a shared connection it means the connection is in a
//! state no command sent on it should have put it in, so it is [`Scan::Invalid`], as are
//! streamed strings and aggregates (`?` lengths, which Redis never sends) and anything that is
//! not RESP. Memory is bounded by the bytes scanned (each open aggregate costs one stack entry
//! and at least four bytes of input); nothing here panics on any input.

/// Result of one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The first reply in the buffer is complete and this long.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    /// Not a reply (see the module doc): the connection cannot be trusted any more.
    Invalid,
}

/// Resumable scanner of one reply at a time. Feed it the buffer from the start of the current
/// reply; after [`Scan::Complete`], drop those bytes (or pass the rest).
#[derive(Debug, Default)]
pub struct Scanner {
    /// Where the next element starts.
    pos: usize,
    /// Open aggregates, innermost last.
    open: Vec<Open>,
}

/// An aggregate whose elements are still coming.
#[derive(Debug)]
struct Open {
    /// Elements still expected (two per entry of a map or an attribute).
    left: u64,
    /// An attribute: once complete, the value it belongs to follows; it is no element itself.
    attribute: bool,
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
            let head = &buf[self.pos + 1..eol];
            let next = eol + 2;
            match kind {
                b'+' | b'-' | b':' | b',' | b'(' => self.pos = next,
                b'_' if head.is_empty() => self.pos = next,
                b'#' if head == b"t" || head == b"f" => self.pos = next,
                b'$' | b'!' | b'=' => match number(head) {
                    Some(-1) if kind == b'$' => self.pos = next,
                    Some(n) if n >= 0 => {
                        let Some(end) = usize::try_from(n).ok().and_then(|n| next.checked_add(n))
                        else {
                            return Scan::Invalid;
                        };
                        match buf.get(end..end.saturating_add(2)) {
                            None => return Scan::Incomplete,
                            Some(b"\r\n") => self.pos = end + 2,
                            Some(_) => return Scan::Invalid,
                        }
                    }
                    _ => return Scan::Invalid,
                },
                b'*' | b'~' | b'%' | b'|' => {
                    let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                    let left = match number(head) {
                        Some(-1) if kind == b'*' => 0,
                        Some(n) if n >= 0 => match (n as u64).checked_mul(per) {
                            Some(l) => l,
                            None => return Scan::Invalid,
                        },
                        _ => return Scan::Invalid,
                    };
                    self.pos = next;
                    if left > 0 {
                        self.open.push(Open {
                            left,
                            attribute: kind == b'|',
                        });
                        continue;
                    }
                    if kind == b'|' {
                        // An empty attribute: the value it belongs to comes next.
                        continue;
                    }
                }
                _ => return Scan::Invalid,
            }
            // An element is complete: close the aggregates it completes.
            loop {
                let Some(top) = self.open.last_mut() else {
                    let len = self.pos;
                    self.pos = 0;
                    return Scan::Complete(len);
                };
                top.left -= 1;
                if top.left > 0 {
                    break;
                }
                let closed = self.open.pop();
                if closed.is_some_and(|o| o.attribute) {
                    // Its value comes next, and is the element.
                    break;
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
    use redis_protocol::resp3::encode::complete::encode as encode3;
    use redis_protocol::resp3::types::{
        FrameMap, OwnedFrame as Frame3, Resp3Frame, VerbatimStringFormat,
    };

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

    fn blob(s: &[u8]) -> Frame3 {
        Frame3::BlobString {
            data: s.to_vec(),
            attributes: None,
        }
    }

    fn frames3() -> Vec<Frame3> {
        use Frame3::*;
        let attrs = || {
            let mut a = FrameMap::new();
            a.insert(
                blob(b"key-popularity"),
                Array {
                    data: vec![
                        blob(b"a"),
                        Double {
                            data: 0.1923,
                            attributes: None,
                        },
                    ],
                    attributes: None,
                },
            );
            Some(a)
        };
        let mut map = FrameMap::new();
        map.insert(blob(b"server"), blob(b"redis"));
        map.insert(
            blob(b"proto"),
            Number {
                data: 3,
                attributes: None,
            },
        );
        map.insert(
            blob(b"modules"),
            Array {
                data: vec![],
                attributes: None,
            },
        );
        let mut set = std::collections::HashSet::new();
        set.insert(blob(b"m1"));
        set.insert(Number {
            data: 7,
            attributes: None,
        });
        vec![
            SimpleString {
                data: b"OK".to_vec(),
                attributes: None,
            },
            SimpleError {
                data: "ERR no".into(),
                attributes: None,
            },
            Number {
                data: -42,
                attributes: None,
            },
            Double {
                data: 3.25,
                attributes: None,
            },
            Double {
                data: f64::INFINITY,
                attributes: None,
            },
            Boolean {
                data: true,
                attributes: None,
            },
            Boolean {
                data: false,
                attributes: None,
            },
            Null,
            BigNumber {
                data: b"3492890328409238509324850943850943825024385".to_vec(),
                attributes: None,
            },
            BlobError {
                data: b"SYNTAX invalid\r\nsyntax".to_vec(),
                attributes: None,
            },
            VerbatimString {
                data: b"Some string".to_vec(),
                format: VerbatimStringFormat::Text,
                attributes: None,
            },
            blob(b"hello\r\nworld"),
            blob(b""),
            Map {
                data: map.clone(),
                attributes: None,
            },
            Map {
                data: FrameMap::new(),
                attributes: None,
            },
            Set {
                data: set,
                attributes: None,
            },
            Array {
                data: vec![
                    Map {
                        data: map,
                        attributes: None,
                    },
                    Array {
                        data: vec![
                            Null,
                            Boolean {
                                data: true,
                                attributes: None,
                            },
                        ],
                        attributes: None,
                    },
                    // An attribute inside an aggregate belongs to the element after it.
                    Number {
                        data: 1,
                        attributes: attrs(),
                    },
                ],
                attributes: None,
            },
            // An attribute at the top: one reply with its value.
            Array {
                data: vec![blob(b"x")],
                attributes: attrs(),
            },
            Number {
                data: 9,
                attributes: attrs(),
            },
            blob(&[b'%'; 70_000]),
        ]
    }

    /// Every split of `stream`, scanned as it arrives, finds the reply ends `ends`.
    fn check_splits(stream: &[u8], ends: &[usize]) {
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
                    Scan::Incomplete => {
                        assert!(avail < stream.len(), "stuck at {start}");
                        avail = (avail + chunk).min(stream.len());
                    }
                    Scan::Invalid => panic!("invalid at {start}"),
                }
            }
            assert_eq!(got, ends, "chunk {chunk}");
        }
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
        check_splits(&stream, &ends);
    }

    /// The same for every RESP3 type, attributes included (an attribute and the value after it
    /// are one reply).
    #[test]
    fn finds_every_resp3_reply_boundary_across_every_split() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for f in &frames3() {
            let mut b = vec![0u8; f.encode_len(false)];
            let n = encode3(&mut b, f, false).unwrap();
            stream.extend_from_slice(&b[..n]);
            ends.push(stream.len());
        }
        // Redis's own spellings: an empty attribute, `,nan`, `,-inf`, a nested attribute.
        for extra in [
            &b"|0\r\n:1\r\n"[..],
            b",nan\r\n",
            b",-inf\r\n",
            b"%1\r\n|1\r\n+a\r\n+b\r\n+key\r\n~2\r\n_\r\n#f\r\n",
        ] {
            stream.extend_from_slice(extra);
            ends.push(stream.len());
        }
        check_splits(&stream, &ends);
    }

    #[test]
    fn refuses_what_is_not_a_reply() {
        for bad in [
            &b"$x\r\n"[..],
            b"*-2\r\n",
            b"%-1\r\n",
            b"$1\r\nab\r\n",
            b"hello\r\n",
            b">2\r\n+message\r\n+x\r\n",
            b"*1\r\n>1\r\n+x\r\n",
            b"$?\r\n;1\r\na\r\n;0\r\n",
            b"*?\r\n",
            b"_x\r\n",
            b"#x\r\n",
            b"!-1\r\n",
        ] {
            assert_eq!(Scanner::default().scan(bad), Scan::Invalid, "{bad:?}");
        }
    }

    /// Garbage and mangled replies, in every split: the scanner never panics, never claims a
    /// reply longer than its input, and holds at most one open aggregate per four bytes.
    #[test]
    fn garbage_never_panics() {
        let mut valid = Vec::new();
        for f in &frames3()[..18] {
            let mut b = vec![0u8; f.encode_len(false)];
            let n = encode3(&mut b, f, false).unwrap();
            valid.extend_from_slice(&b[..n]);
        }
        let alphabet = b"*%~|>$!=+-:,(#_?\r\n0123456789-tf";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let mut input = if round % 2 == 0 {
                valid.clone()
            } else {
                Vec::new()
            };
            for _ in 0..(rand() % 64) {
                let b = alphabet[(rand() % alphabet.len() as u64) as usize];
                if input.is_empty() || rand() % 3 == 0 {
                    input.push(b);
                } else {
                    let at = (rand() % input.len() as u64) as usize;
                    input[at] = b;
                }
            }
            let mut s = Scanner::default();
            let mut start = 0;
            let mut avail = 0;
            let chunk = 1 + (rand() % 16) as usize;
            loop {
                match s.scan(&input[start..avail]) {
                    Scan::Complete(n) => {
                        assert!(n > 0 && start + n <= avail);
                        start += n;
                    }
                    Scan::Incomplete if avail < input.len() => {
                        avail = (avail + chunk).min(input.len())
                    }
                    Scan::Incomplete | Scan::Invalid => break,
                }
                assert!(s.open.len() <= input.len() / 4 + 1);
            }
        }
    }
}
