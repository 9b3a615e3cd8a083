//! Sans-IO framing of client requests, exactly as Redis reads them, or not at all.
//!
//! Redis reads two request forms: a multibulk (`*<n>\r\n` then `n` times `$<len>\r\n<bytes>\r\n`)
//! and an inline command (one line of words, as typed in telnet). The parser finds where each
//! request ends and the command's name and first argument, which is all the classifier needs.
//! It is strict where Redis is lenient (a number with a sign or leading zeros, a `\r` not
//! followed by `\n`, a quoted inline word, a line over 64 KiB): such bytes are
//! [`Step::Unframed`], never guessed at: the session pins the client and its own backend
//! connection reads them, so Redis answers (or refuses) them exactly as it would directly, and a
//! malformed request never reaches a shared connection, where Redis's protocol error would
//! close it under other clients.
//!
//! The parser resumes where it stopped: a request that arrives in pieces (a big argument, a
//! client that sends half a command and waits) is scanned once, not from its start at every
//! read.

use std::ops::Range;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request or count line it accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// Redis's default `proto-max-bulk-len` (512 MiB): longer arguments are left to Redis.
pub const MAX_BULK: i64 = 512 * 1024 * 1024;
/// Most arguments framed here; a command with more is left to Redis on a pinned connection.
pub const MAX_ARGS: i64 = 1024 * 1024;

/// What the next request in a buffer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A complete command.
    Command(Command),
    /// This many bytes that Redis reads without replying (an empty inline line, `*0`, `*-1`).
    Skip(usize),
    /// The request is not complete yet.
    Incomplete,
    /// Bytes this parser does not frame exactly as Redis would (see the module doc).
    Unframed,
}

/// A complete command at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Length of the whole request in bytes.
    pub len: usize,
    /// Number of words, the name included.
    pub argc: usize,
    /// Where the command's name is.
    pub name: Range<usize>,
    /// Where its first argument is (a subcommand, `SELECT`'s index), if it has one.
    pub arg1: Option<Range<usize>>,
}

/// Resumable parser of one request at a time. Feed it the buffer from the start of the current
/// request; after a [`Step::Command`] or [`Step::Skip`], drop those bytes (or pass the rest).
#[derive(Debug, Default)]
pub struct Parser {
    /// A multibulk request in progress.
    partial: Option<Multibulk>,
}

#[derive(Debug)]
struct Multibulk {
    argc: usize,
    done: usize,
    /// Where the next argument's `$` line starts.
    pos: usize,
    name: Option<Range<usize>>,
    arg1: Option<Range<usize>>,
}

/// A line ending at `\r\n`: `Ok(Some((content, next)))`, `Ok(None)` for more bytes needed,
/// `Err(())` for a line Redis would not read as we do.
fn line(buf: &[u8], from: usize) -> Result<Option<(Range<usize>, usize)>, ()> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        None if rest.len() > MAX_LINE => Err(()),
        None => Ok(None),
        Some(i) if i > MAX_LINE => Err(()),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((from..from + i, from + i + 2))),
            Some(_) => Err(()),
        },
    }
}

/// A number in its one canonical spelling (`0`, `17`, `-1`), as Redis prints them.
fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    let ok = match digits {
        [b'0'] => !neg,
        [b'1'..=b'9', rest @ ..] => rest.len() < 18 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !ok {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

/// Redis's `isspace` in `sdssplitargs`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl Parser {
    /// The next request at the start of `buf`.
    pub fn next(&mut self, buf: &[u8]) -> Step {
        if self.partial.is_none() {
            match buf.first() {
                None => return Step::Incomplete,
                Some(b'*') => {}
                Some(_) => return inline(buf),
            }
            let (count, next) = match line(buf, 1) {
                Err(()) => return Step::Unframed,
                Ok(None) => return Step::Incomplete,
                Ok(Some(l)) => l,
            };
            let n = match number(&buf[count]) {
                None => return Step::Unframed,
                Some(n) if n > MAX_ARGS => return Step::Unframed,
                Some(n) if n <= 0 => return Step::Skip(next),
                Some(n) => n as usize,
            };
            self.partial = Some(Multibulk {
                argc: n,
                done: 0,
                pos: next,
                name: None,
                arg1: None,
            });
        }
        let Some(m) = self.partial.as_mut() else {
            return Step::Incomplete;
        };
        while m.done < m.argc {
            match buf.get(m.pos) {
                None => return Step::Incomplete,
                Some(b'$') => {}
                Some(_) => return self.unframed(),
            }
            let (len, start) = match line(buf, m.pos + 1) {
                Err(()) => return self.unframed(),
                Ok(None) => return Step::Incomplete,
                Ok(Some(l)) => l,
            };
            let len = match number(&buf[len]) {
                Some(l) if (0..=MAX_BULK).contains(&l) => l as usize,
                _ => return self.unframed(),
            };
            let end = start + len;
            match buf.get(end..end + 2) {
                None => return Step::Incomplete,
                Some(b"\r\n") => {}
                Some(_) => return self.unframed(),
            }
            match m.done {
                0 => m.name = Some(start..end),
                1 => m.arg1 = Some(start..end),
                _ => {}
            }
            m.done += 1;
            m.pos = end + 2;
        }
        let m = self.partial.take();
        match m {
            Some(Multibulk {
                argc,
                pos,
                name: Some(name),
                arg1,
                ..
            }) => Step::Command(Command {
                len: pos,
                argc,
                name,
                arg1,
            }),
            _ => Step::Unframed,
        }
    }

    fn unframed(&mut self) -> Step {
        self.partial = None;
        Step::Unframed
    }
}

fn inline(buf: &[u8]) -> Step {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Step::Unframed
        } else {
            Step::Incomplete
        };
    };
    if nl > MAX_LINE {
        return Step::Unframed;
    }
    let line = &buf[..nl];
    // Redis unquotes and unescapes quoted words; rather than mirror that, leave them to it.
    if line.iter().any(|&b| b == b'"' || b == b'\'') {
        return Step::Unframed;
    }
    let mut words = Vec::with_capacity(2);
    let mut argc = 0;
    let mut i = 0;
    while i < line.len() {
        if is_space(line[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && !is_space(line[i]) {
            i += 1;
        }
        if words.len() < 2 {
            words.push(start..i);
        }
        argc += 1;
    }
    let mut words = words.into_iter();
    match words.next() {
        None => Step::Skip(nl + 1),
        Some(name) => Step::Command(Command {
            len: nl + 1,
            argc,
            name,
            arg1: words.next(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(len: usize, argc: usize, name: Range<usize>, arg1: Option<Range<usize>>) -> Step {
        Step::Command(Command {
            len,
            argc,
            name,
            arg1,
        })
    }

    #[test]
    fn frames_requests_as_redis_reads_them() {
        let cases: &[(&[u8], Step)] = &[
            (b"*1\r\n$4\r\nPING\r\n", cmd(14, 1, 8..12, None)),
            (
                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest",
                cmd(20, 2, 8..11, Some(17..18)),
            ),
            (
                b"*2\r\n$6\r\nSELECT\r\n$0\r\n\r\n",
                cmd(22, 2, 8..14, Some(20..20)),
            ),
            (b"PING\r\n", cmd(6, 1, 0..4, None)),
            (b"  set  k v\n", cmd(11, 3, 2..5, Some(7..8))),
            (b"\r\n", Step::Skip(2)),
            (b"   \r\nPING", Step::Skip(5)),
            (b"*0\r\n", Step::Skip(4)),
            (b"*-1\r\n", Step::Skip(5)),
            (b"", Step::Incomplete),
            (b"*", Step::Incomplete),
            (b"*2\r", Step::Incomplete),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r", Step::Incomplete),
            (b"*2\r\n$3\r\nGET\r\n$10\r\nk", Step::Incomplete),
            (b"PIN", Step::Incomplete),
            (b"*2\rX", Step::Unframed),
            (b"*02\r\n", Step::Unframed),
            (b"*+2\r\n", Step::Unframed),
            (b"*-0\r\n", Step::Unframed),
            (b"*1\r\n:4\r\n", Step::Unframed),
            (b"*1\r\n$-1\r\n", Step::Unframed),
            (b"*1\r\n$4\r\nPINGxx", Step::Unframed),
            (b"*1\r\n$536870913\r\n", Step::Unframed),
            (b"*1048577\r\n", Step::Unframed),
            (b"SET k \"a b\"\r\n", Step::Unframed),
            (b"SET k 'a'\r\n", Step::Unframed),
        ];
        for (input, want) in cases {
            let got = Parser::default().next(input);
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn overlong_lines_are_left_to_redis() {
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(Parser::default().next(&long), Step::Unframed);
        let mut count = b"*".to_vec();
        count.extend(std::iter::repeat_n(b'1', MAX_LINE + 1));
        assert_eq!(Parser::default().next(&count), Step::Unframed);
        // Shorter than the limit: still waiting for the end of the line.
        assert_eq!(
            Parser::default().next(&vec![b'a'; MAX_LINE]),
            Step::Incomplete
        );
    }

    /// Every split of a pipeline, fed as it arrives, yields the same commands as the whole.
    #[test]
    fn resumes_across_every_split() {
        let mut pipeline = Vec::new();
        for (i, args) in [
            vec!["SET", "key", "value"],
            vec!["GET", "key"],
            vec!["CLIENT", "SETNAME", "x"],
        ]
        .iter()
        .enumerate()
        {
            pipeline.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                pipeline.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
            if i == 0 {
                pipeline.extend_from_slice(b"PING now\r\n\r\n");
            }
        }
        let whole = steps(&pipeline, pipeline.len());
        assert_eq!(whole.len(), 5);
        for chunk in 1..pipeline.len() {
            assert_eq!(steps(&pipeline, chunk), whole, "chunk {chunk}");
        }
    }

    /// Feeds `input` `chunk` bytes at a time; returns the lengths and names framed.
    fn steps(input: &[u8], chunk: usize) -> Vec<(usize, String)> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        let mut start = 0;
        let mut avail = 0;
        while start < input.len() {
            match p.next(&input[start..avail]) {
                Step::Command(c) => {
                    let name = &input[start..][c.name];
                    out.push((c.len, String::from_utf8_lossy(name).into_owned()));
                    start += c.len;
                }
                Step::Skip(n) => {
                    out.push((n, String::new()));
                    start += n;
                }
                Step::Incomplete => {
                    assert!(avail < input.len(), "stuck at {start}");
                    avail = (avail + chunk).min(input.len());
                }
                Step::Unframed => panic!("unframed at {start}"),
            }
        }
        out
    }
}
