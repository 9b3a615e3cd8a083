//! Sans-IO parsing of `INFO replication`: a backend's role, history and offset.
//!
//! Nothing here does I/O, so every rule is tested on byte strings (real replies of Redis 6 and
//! 7 masters and replicas, and garbage).

use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{describe, ReplyError, ServerError};

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

/// Interprets the reply to `INFO replication`.
pub fn parse_info_reply(frame: &OwnedFrame) -> Result<ReplicationInfo, ReplyError> {
    match frame {
        OwnedFrame::BulkString(body) => parse_info_text(body),
        OwnedFrame::Error(e) => Err(ReplyError::Redis(ServerError::new(e.clone()))),
        other => Err(ReplyError::Protocol(format!(
            "INFO answered with {}",
            describe(other)
        ))),
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
    use crate::redis::resp::take_frame;
    use bytes::BytesMut;

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
}
