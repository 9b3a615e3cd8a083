//! Which backend serves the Redis master, and which frontend reaches it.

use super::lexer::Line;
use super::sections::{chain, Kind, Section};
use super::values::parse_server_addr;
use super::warnings::Warnings;
use super::{ImportError, REDIS_PORT, SENTINEL_PORT};

pub(super) struct Pick {
    /// The backend (or listen) section whose servers become `backends`.
    pub(super) backend: usize,
    /// The frontend (or listen) section whose `bind` becomes `listen`.
    pub(super) frontend: Option<usize>,
    /// A backend (or listen) of sentinels, which becomes `[sentinel]` and its listener.
    pub(super) sentinel: Option<usize>,
}

/// Whether `idx` is a backend of sentinels: every server it has is on port 26379, or a
/// frontend bound to 26379 sends clients to it.
pub(super) fn is_sentinel_backend(secs: &[Section], idx: usize) -> bool {
    let ports: Vec<u16> = secs[idx]
        .lines
        .iter()
        .filter(|l| l.is(&["server"]))
        .filter_map(|l| parse_server_addr(l.w(2), 0).ok().map(|(hp, _)| hp.port))
        .collect();
    (!ports.is_empty() && ports.iter().all(|&p| p == SENTINEL_PORT))
        || frontends_of(secs, idx)
            .into_iter()
            .any(|f| secs[f].binds().iter().any(|a| a.port() == SENTINEL_PORT))
}

pub(super) fn tcp_check_lines(secs: &[Section], idx: usize) -> Vec<&Line> {
    // Rules in a defaults section are used only by proxies that declare none of their own.
    chain(secs, idx)
        .into_iter()
        .map(|s| {
            secs[s]
                .lines
                .iter()
                .filter(|l| l.is(&["tcp-check"]))
                .collect::<Vec<_>>()
        })
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

pub(super) fn checks_role_master(secs: &[Section], idx: usize) -> bool {
    tcp_check_lines(secs, idx).iter().any(|l| {
        l.w(1) == "expect"
            && l.words[2..]
                .iter()
                .any(|x| x.text.to_ascii_lowercase().contains("role:master"))
    })
}

/// The frontends that send clients to `idx`: itself when it is a `listen` with a `bind`, then
/// every frontend or listen whose `default_backend`/`use_backend` names it.
pub(super) fn frontends_of(secs: &[Section], idx: usize) -> Vec<usize> {
    let b = &secs[idx];
    let mut out = Vec::new();
    if b.kind == Kind::Listen && b.lines.iter().any(|l| l.is(&["bind"])) {
        out.push(idx);
    }
    out.extend(secs.iter().enumerate().filter_map(|(i, s)| {
        (i != idx && matches!(s.kind, Kind::Frontend | Kind::Listen) && s.routes_to(&b.name))
            .then_some(i)
    }));
    out
}

pub(super) fn on_redis_port(secs: &[Section], f: usize) -> bool {
    secs[f].binds().iter().any(|a| a.port() == REDIS_PORT)
}

pub(super) fn choose(secs: &[Section], w: &mut Warnings) -> Result<Pick, ImportError> {
    let candidates: Vec<usize> = (0..secs.len())
        .filter(|&i| matches!(secs[i].kind, Kind::Backend | Kind::Listen) && secs[i].has_servers())
        .collect();
    if candidates.is_empty() {
        return Err(ImportError::NoBackend(
            "no `server` line in any backend or listen section, so there is nothing to route to"
                .into(),
        ));
    }
    let role: Vec<bool> = candidates
        .iter()
        .map(|&i| checks_role_master(secs, i))
        .collect();
    let port: Vec<bool> = candidates
        .iter()
        .map(|&i| {
            frontends_of(secs, i)
                .into_iter()
                .any(|f| on_redis_port(secs, f))
        })
        .collect();
    let n = candidates.len();
    let (k, why) = if let Some(k) = (0..n).find(|&k| role[k] && port[k]) {
        (
            k,
            "its checks look for role:master and clients reach it on port 6379",
        )
    } else if let Some(k) = (0..n).find(|&k| role[k]) {
        (k, "its checks look for role:master")
    } else if let Some(k) = (0..n).find(|&k| port[k]) {
        (k, "clients reach it on port 6379")
    } else if n == 1 {
        (0, "it is the only one with servers")
    } else {
        (
            0,
            "it comes first: no backend checks for role:master and none is reached on port 6379",
        )
    };
    let backend = candidates[k];
    // A backend of sentinels beside it becomes the sentinel listener, not an ignored backend.
    let sentinel = candidates
        .iter()
        .copied()
        .find(|&i| i != backend && !checks_role_master(secs, i) && is_sentinel_backend(secs, i));
    if n > 1
        && candidates
            .iter()
            .any(|&i| i != backend && Some(i) != sentinel)
    {
        let others: Vec<String> = candidates
            .iter()
            .enumerate()
            .filter(|&(j, &i)| j != k && Some(i) != sentinel)
            .map(|(j, &i)| {
                let also = if role[j] {
                    " (it checks role:master too)"
                } else {
                    ""
                };
                format!("`{}`{also}", secs[i].label())
            })
            .collect();
        w.push(format!(
            "picked `{}` because {why}; ignored {}: the proxy serves only the master endpoint \
             (keep HAProxy or a plain Service for the others; one proxy per Redis deployment)",
            secs[backend].label(),
            others.join(", ")
        ));
    }
    let fronts = frontends_of(secs, backend);
    let frontend = fronts
        .iter()
        .copied()
        .find(|&f| on_redis_port(secs, f))
        .or_else(|| fronts.first().copied());
    for &f in fronts.iter().filter(|&&f| Some(f) != frontend) {
        w.push(format!(
            "not mapped: `{}` also sends clients to `{}`, because the proxy listens on one address",
            secs[f].label(),
            secs[backend].label()
        ));
    }
    Ok(Pick {
        backend,
        frontend,
        sentinel,
    })
}
