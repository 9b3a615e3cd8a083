//! Sans-IO core of the health check: the commands it sends and the parsing of what comes back.
//!
//! RESP framing is done by the `redis-protocol` crate; this module only decides what a frame
//! means. Nothing here does I/O, so every rule is tested on byte strings (real replies of Redis
//! 6 and 7 masters and replicas, and garbage).

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

/// Upper bound on the bytes a check reads. An `INFO replication` reply is a few hundred bytes
/// (a few KiB with many replicas); anything larger is a misbehaving peer, not a Redis.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A backend's replication state, as reported by `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReplicationInfo {
    pub role: Role,
    /// Replicas attached to a master (0 on a replica).
    pub connected_slaves: u32,
    /// The replication history this node serves.
    pub master_replid: String,
    /// The history this node was promoted out of (all zeros when none). A promoted replica
    /// carries its old master's `master_replid` here, which is how the election recognises a
    /// promotion even while the old master still says `role:master`.
    pub master_replid2: String,
    pub master_repl_offset: u64,
    /// On a replica: whether its link to the master is up.
    pub master_link_up: Option<bool>,
    /// On a replica: the master it follows.
    pub master_host: Option<String>,
    pub master_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Master,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// Why a reply was not a usable `INFO replication` answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The server answered with an error (`-NOAUTH …`, `-LOADING …`, `-WRONGPASS …`).
    #[error("error reply: {0}")]
    Redis(String),
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
        OwnedFrame::Error(e) => Err(ReplyError::Redis(e.clone())),
        other => Err(ReplyError::Protocol(format!(
            "unexpected reply to AUTH: {}",
            describe(other)
        ))),
    }
}

/// Interprets the reply to `INFO replication`.
pub fn parse_info_reply(frame: &OwnedFrame) -> Result<ReplicationInfo, ReplyError> {
    match frame {
        OwnedFrame::BulkString(body) => parse_info_text(body),
        OwnedFrame::Error(e) => Err(ReplyError::Redis(e.clone())),
        other => Err(ReplyError::Protocol(format!(
            "INFO answered with {}",
            describe(other)
        ))),
    }
}

fn describe(f: &OwnedFrame) -> &'static str {
    match f {
        OwnedFrame::SimpleString(_) => "a simple string",
        OwnedFrame::Error(_) => "an error",
        OwnedFrame::Integer(_) => "an integer",
        OwnedFrame::BulkString(_) => "a bulk string",
        OwnedFrame::Array(_) => "an array",
        OwnedFrame::Null => "null",
    }
}

/// Parses the `key:value` lines of an `INFO replication` body.
pub fn parse_info_text(body: &[u8]) -> Result<ReplicationInfo, ReplyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ReplyError::Protocol("INFO body is not UTF-8".into()))?;
    let mut role = None;
    let mut info = ReplicationInfo::default();
    let mut have_replid = false;
    let mut have_offset = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once(':') else {
            continue; // `# Replication` headers and blank lines
        };
        let num = |v: &str| -> Result<u64, ReplyError> {
            v.parse()
                .map_err(|_| ReplyError::Protocol(format!("`{key}:{v}` is not a number")))
        };
        match key {
            "role" => {
                role = Some(match value {
                    "master" => Role::Master,
                    "slave" | "replica" => Role::Replica,
                    other => {
                        return Err(ReplyError::Protocol(format!("unknown role `{other}`")));
                    }
                })
            }
            "connected_slaves" => {
                info.connected_slaves = u32::try_from(num(value)?)
                    .map_err(|_| ReplyError::Protocol("connected_slaves out of range".into()))?
            }
            "master_replid" => {
                info.master_replid = value.to_string();
                have_replid = true;
            }
            "master_replid2" => info.master_replid2 = value.to_string(),
            "master_repl_offset" => {
                info.master_repl_offset = num(value)?;
                have_offset = true;
            }
            "master_link_status" => info.master_link_up = Some(value == "up"),
            "master_host" => info.master_host = Some(value.to_string()),
            "master_port" => {
                info.master_port = Some(u16::try_from(num(value)?).map_err(|_| {
                    ReplyError::Protocol(format!("master_port `{value}` out of range"))
                })?)
            }
            _ => {}
        }
    }
    info.role = role.ok_or(ReplyError::MissingField("role"))?;
    if !have_replid {
        return Err(ReplyError::MissingField("master_replid"));
    }
    if !have_offset {
        return Err(ReplyError::MissingField("master_repl_offset"));
    }
    Ok(info)
}

impl ReplicationInfo {
    /// The history this node was promoted out of, if any (`master_replid2` is all zeros when
    /// the node never changed history).
    pub fn previous_replid(&self) -> Option<&str> {
        let r = self.master_replid2.as_str();
        (!r.is_empty() && r.bytes().any(|b| b != b'0')).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `INFO replication` of a Redis 7.0 master with two replicas.
    pub(crate) const MASTER_7: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0\r\nslave1:ip=127.0.0.1,port=6381,state=online,offset=1234,lag=1\r\nmaster_failover_state:no-failover\r\nmaster_replid:5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1234\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1234\r\n";
    /// Real `INFO replication` of a Redis 7.0 replica.
    const REPLICA_7: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:1234\r\nslave_repl_offset:1234\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1234\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1234\r\n";
    /// Real `INFO replication` of a Redis 6.2 replica whose master is gone.
    const REPLICA_6_LINK_DOWN: &str = "# Replication\r\nrole:slave\r\nmaster_host:10.42.0.17\r\nmaster_port:6379\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:98\r\nmaster_link_down_since_seconds:12\r\nslave_priority:100\r\nslave_read_only:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:a0d2b8fe5ac4fb08be2c6d4b6d5d3a1e8b0f7c11\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:98\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:98\r\n";
    /// Real `INFO replication` of a Redis 6.0 replica just promoted by `REPLICAOF NO ONE`.
    const PROMOTED_6: &str = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:c7b2f3a9d1e04a5b8c6d7e8f9a0b1c2d3e4f5a6b\r\nmaster_replid2:5a8cb1b1e0b6b6fbd3e3e8a1ab3b0b0d0d3c4e21\r\nmaster_repl_offset:1234\r\nsecond_repl_offset:1235\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1234\r\n";

    fn bulk(body: &str) -> BytesMut {
        BytesMut::from(format!("${}\r\n{}\r\n", body.len(), body).as_bytes())
    }

    fn parse_bytes(mut buf: BytesMut) -> Result<ReplicationInfo, ReplyError> {
        let frame = take_frame(&mut buf)?.ok_or(ReplyError::Protocol("incomplete".into()))?;
        parse_info_reply(&frame)
    }

    #[test]
    fn real_replies() {
        let m = parse_bytes(bulk(MASTER_7)).unwrap();
        assert_eq!(m.role, Role::Master);
        assert_eq!(m.connected_slaves, 2);
        assert_eq!(m.master_repl_offset, 1234);
        assert_eq!(m.previous_replid(), None);
        assert_eq!(m.master_link_up, None);

        let r = parse_bytes(bulk(REPLICA_7)).unwrap();
        assert_eq!(r.role, Role::Replica);
        assert_eq!(r.master_link_up, Some(true));
        assert_eq!(r.master_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.master_port, Some(6379));

        let d = parse_bytes(bulk(REPLICA_6_LINK_DOWN)).unwrap();
        assert_eq!(d.master_link_up, Some(false));
        assert_eq!(d.master_repl_offset, 98);

        let p = parse_bytes(bulk(PROMOTED_6)).unwrap();
        assert_eq!(p.role, Role::Master);
        assert_eq!(p.previous_replid(), Some(m.master_replid.as_str()));
    }

    #[test]
    fn error_and_garbage_replies() {
        let cases: &[(&[u8], &str)] = &[
            (b"-NOAUTH Authentication required.\r\n", "NOAUTH"),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                "LOADING",
            ),
            (b"+OK\r\n", "simple string"),
            (b":1\r\n", "integer"),
            (b"*0\r\n", "array"),
            (b"$-1\r\n", "null"),
            (b"HTTP/1.1 400 Bad Request\r\n\r\n", "unparseable"),
            (b"$5\r\nhello\r\n", "lacks `role`"),
            (b"$10\r\nrole:boss\n\r\n", "unknown role"),
            (
                b"$35\r\nrole:master\nmaster_repl_offset:xyz\n\r\n",
                "not a number",
            ),
            (b"$2\r\n\xff\xfe\r\n", "UTF-8"),
        ];
        for (bytes, needle) in cases {
            let err = parse_bytes(BytesMut::from(*bytes)).expect_err(needle);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }

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
}
