//! Value formats: HAProxy times, `bind` and `server` addresses, `${VAR}` references, the Redis
//! commands in `tcp-check send` payloads; and quoting for the TOML written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::{Dur, HostPort};

/// A HAProxy time: a number with an optional unit among `us`, `ms`, `s`, `m`, `h`, `d`; a bare
/// number is milliseconds (configuration manual §2.5).
pub(super) fn haproxy_time(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a HAProxy time"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{s}` is too long"))
    };
    match unit {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "us" => Ok(Duration::from_micros(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(format!("`{s}`: unknown time unit `{unit}`")),
    }
}

/// The proxy's duration type keeps whole milliseconds: round up, so `500us` stays non-zero.
pub(super) fn to_dur(d: Duration) -> Dur {
    let ms = d.as_micros().div_ceil(1000);
    Dur(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// A `bind` address: `*:6379`, `:6379`, `0.0.0.0:6379`, `[::]:6379`, `:::6379`, `ipv6@:6379`,
/// `10.0.0.1:6379-6380`. Host names and non-TCP sockets have no `SocketAddr` form: refused.
/// The second value notes what was adapted.
pub(super) fn parse_bind(raw: &str) -> Result<(SocketAddr, Option<String>), String> {
    if raw.contains('$') {
        return Err(format!("`{raw}` uses an environment variable"));
    }
    // An empty or `*` host means every IPv4 address, unless the prefix asks for IPv6.
    let (v6, rest) = match raw.split_once('@') {
        Some(("ipv4" | "tcp4" | "tcp", r)) => (false, r),
        Some(("ipv6" | "tcp6", r)) => (true, r),
        Some((f, _)) => return Err(format!("`{raw}` is a `{f}@` socket, not a TCP address")),
        None if raw.starts_with('/') => return Err(format!("`{raw}` is a UNIX socket")),
        None => (false, raw),
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| format!("`{raw}`: unclosed `[`"))?;
        (h, p.strip_prefix(':').unwrap_or(p))
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| format!("`{raw}` has no port"))?
    };
    let mut note = None;
    let port = match port.split_once('-') {
        Some((lo, _)) => {
            note = Some(format!(
                "`{raw}` is a port range; only its first port is used"
            ));
            lo
        }
        None => port,
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{raw}`: `{port}` is not a port"))?;
    let ip = match host {
        "" | "*" if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => h
            .parse::<IpAddr>()
            .map_err(|_| format!("`{raw}`: `{h}` is a host name; write an IP address"))?,
    };
    Ok((SocketAddr::new(ip, port), note))
}

/// How a `server` address's port was written.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PortForm {
    Given,
    /// None: HAProxy connects to the port the client connected to.
    Missing,
    /// `+1` / `-1`: relative to the port the client connected to.
    Relative(i32),
}

/// A `server` address: `host:port`, `host`, `ipv4@10.0.0.1:6379`, `[::1]:6379`, `::1:6379`.
pub(super) fn parse_server_addr(
    raw: &str,
    assumed_port: u16,
) -> Result<(HostPort, PortForm), String> {
    if raw.contains('$') {
        return Err(format!(
            "`{raw}` uses an environment variable; write the host name or address instead"
        ));
    }
    let rest = match raw.split_once('@') {
        Some(("ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6", r)) => r,
        Some((f, _)) => return Err(format!("`{raw}` is a `{f}@` socket, not a TCP address")),
        None if raw.starts_with('/') => return Err(format!("`{raw}` is a UNIX socket")),
        None => raw,
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| format!("`{raw}`: unclosed `[`"))?;
        (h, p.strip_prefix(':').unwrap_or(p))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        }
    };
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return Err(format!("`{raw}` is not a valid address"));
    }
    let (port, form) = if port.is_empty() {
        (assumed_port, PortForm::Missing)
    } else if let Some(off) = port.strip_prefix(['+', '-']) {
        let off: i32 = off
            .parse()
            .map_err(|_| format!("`{raw}`: `{port}` is not a port"))?;
        let off = if port.starts_with('-') { -off } else { off };
        let p = u16::try_from(i32::from(assumed_port) + off)
            .map_err(|_| format!("`{raw}`: the port offset leaves the port range"))?;
        (p, PortForm::Relative(off))
    } else {
        let p = port
            .parse()
            .map_err(|_| format!("`{raw}`: `{port}` is not a port"))?;
        (p, PortForm::Given)
    };
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((text.parse::<HostPort>()?, form))
}

/// `${NAME}`, `$NAME` or `${NAME-default}`: the variable's name (and the default, which is a
/// literal value).
pub(super) fn env_ref(s: &str) -> Option<(&str, Option<&str>)> {
    let inner = match s.strip_prefix("${") {
        Some(r) => r.strip_suffix('}')?,
        None => s.strip_prefix('$')?,
    };
    let (name, default) = match inner.split_once('-') {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
    valid.then_some((name, default))
}

/// The Redis commands a check sends: inline (`AUTH pw\r\n`) or RESP arrays
/// (`*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n`), several per payload.
pub(super) fn redis_commands(payload: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = payload
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(n) = lines[i]
            .strip_prefix('*')
            .and_then(|n| n.parse::<usize>().ok())
        {
            let mut args = Vec::new();
            i += 1;
            while args.len() < n && i < lines.len() {
                if lines[i].starts_with('$') {
                    i += 1;
                }
                if let Some(a) = lines.get(i) {
                    args.push((*a).to_string());
                }
                i += 1;
            }
            if !args.is_empty() {
                out.push(args);
            }
        } else {
            let args: Vec<String> = lines[i].split_whitespace().map(String::from).collect();
            if !args.is_empty() {
                out.push(args);
            }
            i += 1;
        }
    }
    out
}

/// `tcp-check send-binary` payload: hex digits.
pub(super) fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

pub(super) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML comment holds no control characters.
pub(super) fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
