//! Sans-IO RESP for the proxy's own conversations with Redis and Sentinel: encoding the
//! commands it sends, taking one frame at a time off a read buffer, within bounds.
//!
//! RESP framing is done by the `redis-protocol` crate; this module bounds what it is given (the
//! bytes held, the nesting) and says what a frame is. Nothing here does I/O, so every rule is
//! tested on byte strings.

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

/// Upper bound on the bytes a check reads. An `INFO replication` reply is a few hundred bytes
/// (a few KiB with many replicas); anything larger is a misbehaving peer, not a Redis.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The error codes the proxy acts on: the first word of an error reply, as Redis defines it
/// (`-LOADING Redis is loading …` has the code `LOADING`). Read once, where the reply is read,
/// so decisions match on a code, never on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `BUSY`: a script runs past its busy threshold; the server is alive (control rule 2).
    Busy,
    /// `LOADING`: the server is loading its dataset and answers nothing else yet.
    Loading,
    /// `NOAUTH`: the server wants `AUTH` and none was sent.
    NoAuth,
    /// `WRONGPASS`: the user or password was refused.
    WrongPass,
    /// `NOPERM`: the ACL user may not run the command.
    NoPerm,
    /// Any other code.
    Other,
}

impl ErrorCode {
    /// The code of an error reply's message.
    pub fn of(message: &str) -> ErrorCode {
        match message.split(' ').next().unwrap_or("") {
            "BUSY" => ErrorCode::Busy,
            "LOADING" => ErrorCode::Loading,
            "NOAUTH" => ErrorCode::NoAuth,
            "WRONGPASS" => ErrorCode::WrongPass,
            "NOPERM" => ErrorCode::NoPerm,
            _ => ErrorCode::Other,
        }
    }

    /// A refusal to let the proxy in: no password, a wrong one, or an ACL without the command.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            ErrorCode::NoAuth | ErrorCode::WrongPass | ErrorCode::NoPerm
        )
    }
}

/// An error reply from the server: its [`ErrorCode`] and the message as the server wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServerError {
    pub fn new(message: String) -> ServerError {
        ServerError {
            code: ErrorCode::of(&message),
            message,
        }
    }
}

impl From<&str> for ServerError {
    fn from(message: &str) -> ServerError {
        ServerError::new(message.to_string())
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a reply was not a usable answer (to `INFO replication`, `AUTH`, or a sentinel query).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The server answered with an error (`-NOAUTH …`, `-LOADING …`, `-WRONGPASS …`).
    #[error("error reply: {0}")]
    Redis(ServerError),
    /// Not RESP, or RESP of an unexpected type.
    #[error("unparseable reply: {0}")]
    Protocol(String),
    /// More than [`MAX_REPLY_BYTES`] without a complete reply.
    #[error("reply larger than {MAX_REPLY_BYTES} bytes")]
    Oversized,
    /// The reply parsed but lacks the fields every Redis sends (`role`, `master_replid`, …).
    #[error("INFO reply lacks `{0}`")]
    MissingField(&'static str),
}

/// Appends the RESP encoding of a command (an array of bulk strings) to `buf`.
pub fn encode_command(buf: &mut BytesMut, args: &[&[u8]]) {
    let parts: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    // Encoding an array of bulk strings into a growable buffer cannot fail.
    let _ = extend_encode_borrowed(buf, &BorrowedFrame::Array(&parts), false);
}

/// Deepest array nesting accepted. Every reply the proxy reads is at most two levels deep
/// (a pub/sub message is an array of bulk strings); the decoder recurses once per level, so a
/// peer sending `*1\r\n` thousands of times would otherwise overflow a runtime thread's stack.
pub const MAX_NESTING: usize = 4;

/// Checks, without recursion, that the RESP in `buf` (complete or not) nests arrays at most
/// [`MAX_NESTING`] deep. Only array headers and bulk lengths are read; anything malformed is
/// left for the decoder to reject.
fn check_nesting(buf: &[u8]) -> Result<(), ReplyError> {
    // Elements still expected at each open array level.
    let mut open: Vec<i64> = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let Some(eol) = buf[i..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(()); // incomplete line: the decoder will ask for more
        };
        let line = &buf[i..i + eol];
        i += eol + 2;
        let len = || -> Option<i64> { std::str::from_utf8(line.get(1..)?).ok()?.parse().ok() };
        match line.first() {
            Some(b'*') => match len() {
                Some(n) if n > 0 => {
                    if open.len() >= MAX_NESTING {
                        return Err(ReplyError::Protocol(format!(
                            "arrays nested deeper than {MAX_NESTING}"
                        )));
                    }
                    open.push(n);
                    continue; // the array itself is not an element yet
                }
                Some(_) => {} // empty or null array: one element, no nesting
                None => return Ok(()),
            },
            Some(b'$') => match len() {
                Some(n) if n >= 0 => i = i.saturating_add(n as usize + 2),
                Some(_) => {}
                None => return Ok(()),
            },
            Some(_) => {}
            None => return Ok(()),
        }
        // One element completed: close every array it completes.
        while let Some(left) = open.last_mut() {
            *left -= 1;
            if *left > 0 {
                break;
            }
            open.pop();
        }
        // The first frame is complete: what follows it belongs to the next frame and is
        // checked when that one is taken.
        if open.is_empty() {
            return Ok(());
        }
    }
    Ok(())
}

/// Tries to take one frame off the front of `buf`. `Ok(None)` means "need more bytes".
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<OwnedFrame>, ReplyError> {
    check_nesting(buf)?;
    match decode(buf) {
        Ok(Some((frame, used))) => {
            let _ = buf.split_to(used);
            Ok(Some(frame))
        }
        Ok(None) if buf.len() > MAX_REPLY_BYTES => Err(ReplyError::Oversized),
        Ok(None) => Ok(None),
        Err(e) => Err(ReplyError::Protocol(e.details().to_string())),
    }
}

/// The reply to `AUTH`: `+OK`, or an error.
pub fn check_auth_reply(frame: &OwnedFrame) -> Result<(), ReplyError> {
    match frame {
        OwnedFrame::SimpleString(s) if s == b"OK" => Ok(()),
        OwnedFrame::Error(e) => Err(ReplyError::Redis(ServerError::new(e.clone()))),
        other => Err(ReplyError::Protocol(format!(
            "unexpected reply to AUTH: {}",
            describe(other)
        ))),
    }
}

pub(crate) fn describe(f: &OwnedFrame) -> &'static str {
    match f {
        OwnedFrame::SimpleString(_) => "a simple string",
        OwnedFrame::Error(_) => "an error",
        OwnedFrame::Integer(_) => "an integer",
        OwnedFrame::BulkString(_) => "a bulk string",
        OwnedFrame::Array(_) => "an array",
        OwnedFrame::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        let mut deep = BytesMut::new();
        for _ in 0..1_000_000 {
            deep.extend_from_slice(b"*1\r\n");
        }
        let err = take_frame(&mut deep).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        // What real peers send still decodes: a pub/sub message, a sentinel address pair, and
        // nesting right at the limit.
        for ok in [
            &b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$4\r\nm a \r\n"[..],
            b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n",
            b"*1\r\n*1\r\n*1\r\n*2\r\n:1\r\n$-1\r\n",
            b"*2\r\n*0\r\n*-1\r\n",
        ] {
            let mut b = BytesMut::from(ok);
            assert!(take_frame(&mut b).unwrap().is_some(), "{ok:?}");
        }
        let mut five = BytesMut::from(&b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"[..]);
        assert!(take_frame(&mut five).is_err());
    }

    #[test]
    fn incomplete_then_oversized() {
        let mut buf = BytesMut::from(&b"$1073741824\r\nrole:master"[..]);
        assert_eq!(take_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&vec![b'x'; MAX_REPLY_BYTES]);
        assert_eq!(take_frame(&mut buf), Err(ReplyError::Oversized));
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut req = BytesMut::new();
        encode_command(&mut req, &[b"AUTH", b"proxy", b"pw"]);
        encode_command(&mut req, &[b"INFO", b"replication"]);
        assert_eq!(
            &req[..],
            b"*3\r\n$4\r\nAUTH\r\n$5\r\nproxy\r\n$2\r\npw\r\n*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n"
        );
        assert!(check_auth_reply(&OwnedFrame::SimpleString(b"OK".to_vec())).is_ok());
        assert!(check_auth_reply(&OwnedFrame::Error("WRONGPASS x".into())).is_err());
    }

    #[test]
    fn an_error_reply_is_classified_by_its_first_word() {
        for (message, code) in [
            ("BUSY Redis is busy running a script.", ErrorCode::Busy),
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorCode::Loading,
            ),
            ("NOAUTH Authentication required.", ErrorCode::NoAuth),
            (
                "WRONGPASS invalid username-password pair",
                ErrorCode::WrongPass,
            ),
            ("NOPERM this user has no permissions", ErrorCode::NoPerm),
            ("NOAUTH", ErrorCode::NoAuth),
            // Another code that merely starts with the same letters is another code.
            ("BUSYKEY Target key name already exists.", ErrorCode::Other),
            ("ERR unknown command", ErrorCode::Other),
            ("", ErrorCode::Other),
        ] {
            assert_eq!(ServerError::new(message.into()).code, code, "{message}");
        }
        let e = ReplyError::Redis(ServerError::new("LOADING wait".into()));
        assert_eq!(e.to_string(), "error reply: LOADING wait");
    }
}
