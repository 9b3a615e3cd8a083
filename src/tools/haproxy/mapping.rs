//! What is mapped: the result being built ([`Out`]), and the listeners, admin, sentinel and
//! limits settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::lexer::show_words;
use super::pick::{frontends_of, Pick};
use super::sections::{global, lookup, Kind, Section};
use super::servers::server_params;
use super::values::{haproxy_time, parse_bind, parse_server_addr, to_dur};
use super::warnings::Warnings;
use super::{
    HAPROXY_INTER, MAX_DURATION, MIN_INTERVAL, REDIS_PORT, SENTINEL_MASTER_NAME, SENTINEL_PORT,
};
use crate::config::{Dur, HostPort};

#[derive(Default)]
pub(super) struct Out {
    /// Which HAProxy sections the file came from, for its opening comment.
    pub(super) origin: String,
    pub(super) listen: Option<(SocketAddr, String)>,
    pub(super) admin: Option<(SocketAddr, String)>,
    pub(super) backends: Vec<(HostPort, String)>,
    pub(super) max_connections: Option<(usize, String)>,
    pub(super) connect_timeout: Option<(Dur, String)>,
    pub(super) interval: Option<(Dur, String)>,
    pub(super) timeout: Option<(Dur, String)>,
    pub(super) rise: Option<(u32, String)>,
    pub(super) fall: Option<(u32, String)>,
    pub(super) auth: Option<AuthOut>,
    pub(super) sentinel: Option<SentinelOut>,
}

/// `[sentinel]`, from a backend of sentinels.
pub(super) struct SentinelOut {
    /// Which HAProxy sections it came from.
    pub(super) origin: String,
    pub(super) addresses: Vec<(HostPort, String)>,
    pub(super) listen: Option<(SocketAddr, String)>,
    pub(super) interval: (Dur, String),
    pub(super) timeout: (Dur, String),
}

pub(super) struct AuthOut {
    /// ACL user of the checks' `AUTH user password`; `None` for `AUTH password`.
    pub(super) username: Option<String>,
}

pub(super) fn map_listen(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
    let Some(f) = pick.frontend else {
        w.push(format!(
            "no frontend sends clients to `{}`, so `listen` is not set and the proxy listens on \
             its default 127.0.0.1:16379; set `listen` (in Kubernetes: \"0.0.0.0:6379\")",
            secs[pick.backend].label()
        ));
        return;
    };
    let front = &secs[f];
    let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
    for l in front.lines.iter().filter(|l| l.is(&["bind"])) {
        for a in l.w(1).split(',') {
            match parse_bind(a) {
                Ok((addr, note)) => {
                    if let Some(n) = note {
                        w.push(format!("{n} (`{}`)", front.label()));
                    }
                    addrs.push((addr, a.to_string()));
                }
                Err(e) => w.push(format!(
                    "not mapped: `bind {a}` (`{}`), because {e}",
                    front.label()
                )),
            }
        }
        if l.words.len() > 2 {
            let opts = show_words(&l.words[2..]);
            let why = if l.words[2..]
                .iter()
                .any(|x| matches!(x.text.as_str(), "ssl" | "crt" | "crt-list"))
            {
                "the proxy does not terminate TLS: clients must connect in plain TCP"
            } else if l.words[2..].iter().any(|x| x.text == "accept-proxy") {
                "the proxy does not read PROXY protocol headers"
            } else {
                "the proxy listens with default socket options"
            };
            w.push(format!(
                "not mapped: bind options `{opts}` (`{}`), because {why}",
                front.label()
            ));
        }
    }
    let chosen = addrs
        .iter()
        .position(|(a, _)| a.port() == REDIS_PORT)
        .or((!addrs.is_empty()).then_some(0));
    match chosen {
        Some(i) => {
            let (addr, raw) = addrs[i].clone();
            for (_, other) in addrs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, x)| x)
            {
                w.push(format!(
                    "not mapped: `bind {other}` (`{}`), because the proxy listens on one address \
                     ({addr})",
                    front.label()
                ));
            }
            out.listen = Some((addr, format!("bind {raw} ({})", front.label())));
        }
        None => w.push(format!(
            "`{}` has no TCP `bind` address the proxy can use, so `listen` is not set (default \
             127.0.0.1:16379); set it",
            front.label()
        )),
    }
}

/// Maps a backend of sentinels (HAProxy's second frontend, `bind *:26379`) to `[sentinel]`:
/// its servers become `addresses`, the frontend's `bind` the sentinel listener, the servers'
/// `inter` the listener's check interval.
pub(super) fn map_sentinel(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
    let Some(idx) = pick.sentinel else {
        return;
    };
    let b = &secs[idx];
    let fronts = frontends_of(secs, idx);
    let front = fronts
        .iter()
        .copied()
        .find(|&f| secs[f].binds().iter().any(|a| a.port() == SENTINEL_PORT))
        .or_else(|| fronts.first().copied());
    let origin = match front {
        Some(f) if f != idx => format!("{}, reached through {}", b.label(), secs[f].label()),
        _ => b.label(),
    };
    let mut addresses: Vec<(HostPort, String)> = Vec::new();
    let mut inter: Option<(String, Duration)> = None;
    for l in b.lines.iter().filter(|l| l.is(&["server"])) {
        let name = l.w(1).to_string();
        match parse_server_addr(l.w(2), SENTINEL_PORT) {
            Ok((hp, _)) if !addresses.iter().any(|(x, _)| *x == hp) => {
                addresses.push((hp, name.clone()))
            }
            Ok(_) => {}
            Err(e) => w.push(format!(
                "not mapped: sentinel server `{name}` (line {}), because {e}",
                l.no
            )),
        }
        let params = server_params(l.words.get(3..).unwrap_or_default(), "server lines");
        if let Some(p) = params.iter().rev().find(|p| p.kw == "inter") {
            if let Ok(d) = haproxy_time(p.args.first().map_or("", String::as_str)) {
                inter.get_or_insert((format!("inter {} ({})", p.args.join(" "), p.src), d));
            }
        }
    }
    if addresses.is_empty() {
        w.push(format!(
            "not mapped: `{}` looks like a backend of sentinels but has no server the proxy can \
             use",
            b.label()
        ));
        return;
    }
    let (note, d) = inter.unwrap_or_else(|| ("HAProxy's default inter".into(), HAPROXY_INTER));
    let interval = (to_dur(d.clamp(MIN_INTERVAL, MAX_DURATION)), note);
    let timeout = match lookup(secs, idx, &["timeout", "check"])
        .and_then(|(l, sec)| haproxy_time(l.w(2)).ok().map(|d| (d, sec.label())))
    {
        Some((d, src)) if d < interval.0 .0 && !d.is_zero() => {
            (to_dur(d), format!("timeout check ({src})"))
        }
        Some((d, src)) => {
            w.push(format!(
                "sentinel.check_timeout: `timeout check {}` ({src}) is not below the sentinels' \
                 check interval {}; set to half of it",
                Dur(d),
                interval.0
            ));
            (Dur(interval.0 .0 / 2), "half of the interval".into())
        }
        None => {
            let d = crate::config::SENTINEL_CHECK_TIMEOUT.min(interval.0 .0 / 2);
            (Dur(d), "the proxy's default, below the interval".into())
        }
    };
    let listen = front.and_then(|f| {
        let binds = secs[f].binds();
        let a = binds
            .iter()
            .copied()
            .find(|a| a.port() == SENTINEL_PORT)
            .or_else(|| binds.first().copied())?;
        Some((a, format!("bind in {}", secs[f].label())))
    });
    if listen.is_none() {
        w.push(format!(
            "no frontend sends clients to `{}`: [sentinel] is set without `listen`, so the \
             sentinels feed the election but no sentinel listener is opened",
            b.label()
        ));
    }
    if let Some(l) = lookup(secs, idx, &["balance"]) {
        w.push(format!(
            "not mapped: `balance {}` ({}), because the sentinel listener sends every client \
             to one sentinel that answers PING (any sentinel answers every Sentinel command)",
            l.0.w(1),
            b.label()
        ));
    }
    w.push(format!(
        "sentinel.master_name is set to `{SENTINEL_MASTER_NAME}` (Sentinel's default): HAProxy \
         does not name the master group; set the name your sentinels monitor \
         (`sentinel monitor <name> …`)"
    ));
    w.push(format!(
        "`{}` became [sentinel]: its sentinels are also asked for the master and their \
         failover events move the route within milliseconds",
        b.label()
    ));
    out.sentinel = Some(SentinelOut {
        origin,
        addresses,
        listen,
        interval,
        timeout,
    });
}

pub(super) fn is_stats(s: &Section) -> bool {
    s.lines.iter().any(|l| {
        (l.w(0) == "stats" && l.w(1) != "socket")
            || (l.is(&["http-request", "use-service"]) && l.w(2).contains("prometheus-exporter"))
    })
}

pub(super) fn map_admin(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
    let stats = secs.iter().enumerate().find(|&(i, s)| {
        matches!(s.kind, Kind::Frontend | Kind::Listen)
            && i != pick.backend
            && Some(i) != pick.frontend
            && is_stats(s)
    });
    let Some((_, s)) = stats else {
        w.push(
            "`admin` is not set, so /readyz, /livez, /metrics and /status stay on \
             127.0.0.1:8404; in Kubernetes the probes need admin = \"0.0.0.0:8404\" (as in \
             deploy/kubernetes/base/config.toml)"
                .into(),
        );
        return;
    };
    let Some(addr) = s.binds().into_iter().next() else {
        w.push(format!(
            "the stats page `{}` has no TCP `bind` address, so `admin` is not set",
            s.label()
        ));
        return;
    };
    if out
        .listen
        .as_ref()
        .is_some_and(|(l, _)| l.port() == addr.port())
    {
        w.push(format!(
            "not mapped: the stats page `{}` binds the client port {}",
            s.label(),
            addr.port()
        ));
        return;
    }
    let bind = s
        .lines
        .iter()
        .find(|l| l.is(&["bind"]))
        .map_or(String::new(), |l| l.w(1).to_string());
    out.admin = Some((
        addr,
        format!(
            "where HAProxy's stats page was (bind {bind}, {})",
            s.label()
        ),
    ));
    let mut msg = format!(
        "HAProxy's stats page (`{}`) is replaced by the admin listener on its address {addr}: \
         /status (JSON; `redis-master-proxy status` prints it as a table), /metrics \
         (Prometheus), /readyz and /livez. It has no login: keep it on a private network \
         (deploy/kubernetes/base/networkpolicy.yaml admits only the monitoring namespace)",
        s.label()
    );
    if s.lines.iter().any(|l| l.is(&["stats", "auth"])) {
        msg.push_str("; its `stats auth` credentials are not carried over");
    }
    w.push(msg);
}

pub(super) fn map_limits(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
    let b = pick.backend;
    match lookup(secs, b, &["timeout", "connect"]) {
        Some((l, s)) => match haproxy_time(l.w(2)) {
            Ok(d) if d.is_zero() => w.push(
                "`timeout connect 0` (no limit) is not mapped: the proxy's connect_timeout is \
                 at most 24h; kept its default 1s"
                    .into(),
            ),
            Ok(d) if d > MAX_DURATION => w.push(format!(
                "`timeout connect {}` is longer than the proxy accepts (24h): kept its default 1s",
                l.w(2)
            )),
            Ok(d) => {
                out.connect_timeout = Some((
                    to_dur(d),
                    format!("timeout connect {} ({})", l.w(2), s.label()),
                ));
            }
            Err(e) => w.push(format!("`timeout connect`: {e}; kept the default 1s")),
        },
        None => w.push(
            "`timeout connect` is not set (HAProxy then waits without limit): the proxy's \
             connect_timeout keeps its default 1s"
                .into(),
        ),
    }

    // The frontend's maxconn (its own, else its defaults'), else the process-wide one.
    let own = lookup(secs, pick.frontend.unwrap_or(b), &["maxconn"]).map(|(l, s)| (l, s.label()));
    let found = own.or_else(|| {
        global(secs)
            .filter(|l| l.is(&["maxconn"]))
            .last()
            .map(|l| (l, "global".to_string()))
    });
    if let Some((l, src)) = found {
        match l.w(1).parse::<usize>() {
            Ok(n) if n >= 1 => {
                out.max_connections = Some((n, format!("maxconn {n} ({src})")));
                if src == "global" {
                    w.push(format!(
                        "max_connections = {n} comes from the global maxconn, HAProxy's limit for \
                         the whole process (stats page included); the proxy's limit counts client \
                         connections only"
                    ));
                }
            }
            _ => w.push(format!(
                "`maxconn {}` ({src}) is not a positive number; max_connections keeps its \
                 default 10000",
                l.w(1)
            )),
        }
    }
}
