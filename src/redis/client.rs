//! The small Redis client the checks and the sentinel code share: resolve the name again,
//! connect, send `AUTH` (when configured) pipelined with one command, read one reply bounded by
//! [`MAX_REPLY_BYTES`](resp::MAX_REPLY_BYTES). Timeouts are the caller's: each wraps its whole
//! conversation in one. Every failure is a [`CheckError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, ErrorCode, ReplyError, ServerError};
use crate::config::{Auth, HostPort};

/// Why a check failed. [`CheckError::reason`] is the bounded metric label. I/O errors keep
/// their source (shared, so a report can be cloned into `/status`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    /// The proxy itself is out of descriptors or memory: says nothing about the backend, so it
    /// does not count against it.
    #[error("the proxy cannot open a check connection: {0}")]
    Local(#[source] Arc<std::io::Error>),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("no answer within {timeout:?} (while {stage})")]
    Timeout {
        timeout: Duration,
        stage: &'static str,
    },
    #[error("connection closed before a complete reply")]
    Closed,
    /// The peer reset the connection: the process behind it is gone or restarting.
    #[error("connection reset by the backend")]
    Reset,
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("AUTH refused: {0}")]
    Auth(ServerError),
    #[error("{0}")]
    Reply(ReplyError),
}

impl CheckError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CheckError::Resolve { .. } => "resolve",
            CheckError::Refused(_) => "refused",
            CheckError::Local(_) => "local_resources",
            CheckError::Connect { .. } => "connect",
            CheckError::Timeout { .. } => "timeout",
            CheckError::Closed => "closed",
            CheckError::Reset => "reset",
            CheckError::Io(_) => "io",
            CheckError::Auth(_) => "auth",
            CheckError::Reply(ReplyError::Redis(e)) => match e.code {
                ErrorCode::Loading => "loading",
                code if code.is_auth() => "auth",
                _ => "error_reply",
            },
            CheckError::Reply(ReplyError::Oversized) => "oversized",
            CheckError::Reply(_) => "protocol",
        }
    }
}

/// An I/O error on an open check connection: a reset is its own kind (evidence that the server
/// is gone), anything else is kept as text.
fn io_error(e: std::io::Error) -> CheckError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => CheckError::Reset,
        _ => CheckError::Io(Arc::new(e)),
    }
}

/// Resolves `target`, connects, and sends `AUTH` (when configured) pipelined with `command`;
/// reads the AUTH reply and returns the stream and buffer positioned at the command's reply.
/// `progress` is told each stage (and the resolved address) so a timeout can say where it
/// stopped.
pub(crate) async fn open(
    target: &HostPort,
    auth: Option<&Auth>,
    command: &[&[u8]],
    progress: &(dyn Fn(&'static str, Option<SocketAddr>) + Sync),
) -> Result<(TcpStream, BytesMut), CheckError> {
    let addr = resolve(target).await?;
    progress("connecting", Some(addr));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            CheckError::Refused(addr)
        } else if matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        ) {
            CheckError::Local(Arc::new(e))
        } else {
            CheckError::Connect {
                addr,
                source: Arc::new(e),
            }
        }
    })?;
    let _ = stream.set_nodelay(true);
    let mut request = BytesMut::with_capacity(128);
    if let Some(a) = auth {
        let pw = a.password.expose().as_bytes();
        match a.username.as_deref() {
            Some(u) => resp::encode_command(&mut request, &[b"AUTH", u.as_bytes(), pw]),
            None => resp::encode_command(&mut request, &[b"AUTH", pw]),
        }
    }
    resp::encode_command(&mut request, command);
    progress("sending", None);
    stream.write_all(&request).await.map_err(io_error)?;
    let mut buf = BytesMut::with_capacity(4096);
    if auth.is_some() {
        progress("waiting for the AUTH reply", None);
        let frame = read_frame(&mut stream, &mut buf).await?;
        resp::check_auth_reply(&frame).map_err(|e| match e {
            ReplyError::Redis(msg) => CheckError::Auth(msg),
            other => CheckError::Reply(other),
        })?;
    }
    Ok((stream, buf))
}

/// Resolves the backend's host name now (no caching: a restarted pod's new IP is seen at once).
pub async fn resolve(backend: &HostPort) -> Result<SocketAddr, CheckError> {
    if let Ok(ip) = backend.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, backend.port));
    }
    let err = |e: std::io::Error| CheckError::Resolve {
        host: backend.host.clone(),
        source: Arc::new(e),
    };
    let mut addrs = tokio::net::lookup_host((backend.host.as_str(), backend.port))
        .await
        .map_err(err)?;
    addrs.next().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ))
    })
}

pub(crate) async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<redis_protocol::resp2::types::OwnedFrame, CheckError> {
    loop {
        if let Some(frame) = resp::take_frame(buf).map_err(CheckError::Reply)? {
            return Ok(frame);
        }
        buf.reserve(4096);
        // Never read past the bound: at most MAX_REPLY_BYTES + one read are ever held.
        let n = stream.read_buf(buf).await.map_err(io_error)?;
        if n == 0 {
            return Err(CheckError::Closed);
        }
    }
}
