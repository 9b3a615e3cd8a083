//! One warning, with its reason, for each keyword that has no counterpart.

use super::lexer::Line;
use super::pick::Pick;
use super::sections::{chain, global, Section};
use super::warnings::Warnings;

/// One warning for each directive of the sections that shaped the import (the backend, its
/// frontend, their `defaults`, `global`) that has no counterpart.
pub(super) fn scan_unmapped(secs: &[Section], pick: &Pick, w: &mut Warnings) {
    let mut order: Vec<usize> = vec![pick.backend];
    if let Some(f) = pick.frontend {
        order.push(f);
    }
    for start in order.clone() {
        for s in chain(secs, start).into_iter().skip(1) {
            order.push(s);
        }
    }
    let mut seen: Vec<usize> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for idx in order {
        if seen.contains(&idx) {
            continue;
        }
        seen.push(idx);
        let s = &secs[idx];
        let is_backend = idx == pick.backend;
        for l in &s.lines {
            let Some((key, show_args, reason)) = proxy_reason(l, secs, pick, is_backend) else {
                continue;
            };
            if done.contains(&key) {
                continue;
            }
            done.push(key.clone());
            let shown = if show_args { l.show() } else { key };
            w.push(format!(
                "not mapped: `{shown}` ({}), because {reason}",
                s.label()
            ));
        }
    }

    let mut process: Vec<String> = Vec::new();
    for l in global(secs) {
        let kw = l.w(0);
        match kw {
            "maxconn" => {}
            "log" | "log-tag" | "log-send-hostname" => w.push(format!(
                "not mapped: `{kw}` (global), because the proxy logs to stderr (RUST_LOG or \
                 --log-level), for the container runtime to collect"
            )),
            "stats" => w.push(format!(
                "not mapped: `stats {}` (global), because the proxy has no runtime socket: \
                 /status shows backends and master, and SIGHUP reloads the file",
                l.w(1)
            )),
            "hard-stop-after" => w.push(format!(
                "not mapped: `hard-stop-after {}` (global): the proxy's counterpart is \
                 shutdown_grace (10s by default), left alone because in Kubernetes it must stay \
                 below terminationGracePeriodSeconds minus the preStop pause",
                l.w(1)
            )),
            "setenv" | "presetenv" | "resetenv" | "unsetenv" => w.push(format!(
                "not mapped: `{kw} {}` (global), because the proxy reads only password_env from \
                 its environment",
                l.w(1)
            )),
            _ => {
                if !process.iter().any(|p| p == kw) {
                    process.push(kw.to_string());
                }
            }
        }
    }
    if !process.is_empty() {
        w.push(format!(
            "not mapped: {} (global), because they set up the HAProxy process; the proxy runs \
             in the foreground as the container's user and needs no tuning",
            process
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

/// For a directive with no counterpart: the key it is reported under, whether its arguments
/// may be shown (never for those that can hold credentials), and why it is not mapped. `None`
/// for directives that are mapped or handled elsewhere.
pub(super) fn proxy_reason(
    l: &Line,
    secs: &[Section],
    pick: &Pick,
    is_backend: bool,
) -> Option<(String, bool, &'static str)> {
    let (neg, w0, w1) = if l.w(0) == "no" {
        ("no ", l.w(1), l.w(2))
    } else {
        ("", l.w(0), l.w(1))
    };
    let compound = matches!(
        w0,
        "option"
            | "timeout"
            | "stats"
            | "tcp-request"
            | "tcp-response"
            | "http-request"
            | "http-response"
            | "http-check"
            | "external-check"
            | "rate-limit"
            | "stick"
            | "email-alert"
            | "persist"
    );
    let key = if compound {
        format!("{neg}{w0} {w1}")
    } else {
        format!("{neg}{w0}")
    };
    let backend_name = &secs[pick.backend].name;
    let reason: &'static str = match (w0, w1) {
        (
            "bind" | "server" | "server-template" | "default-server" | "tcp-check" | "maxconn"
            | "description" | "id" | "enabled",
            _,
        ) => return None,
        ("mode", "tcp") => return None,
        ("mode", _) => "the proxy relays TCP, and Redis clients speak RESP, not HTTP",
        ("default_backend" | "use_backend", b) if b == backend_name => return None,
        ("default_backend" | "use_backend", _) => {
            "every client goes to the master of the imported backend"
        }
        ("timeout", "connect" | "check") => return None,
        ("timeout", "client" | "server" | "tunnel" | "client-fin" | "server-fin") => {
            "the proxy never closes a session for being idle: Redis's own `timeout` and the \
             clients decide"
        }
        ("timeout", "queue") => "the proxy has no queue: past max_connections a client is refused",
        ("timeout", _) => "the proxy relays TCP and has no HTTP timeouts",
        (
            "option",
            "tcp-check" | "redis-check" | "httpchk" | "mysql-check" | "pgsql-check" | "ldap-check"
            | "smtpchk" | "ssl-hello-chk" | "spop-check" | "external-check",
        ) => return None,
        ("balance", _) => "every client goes to the one master, so there is nothing to balance",
        (
            "option",
            "tcplog"
            | "httplog"
            | "dontlognull"
            | "logasap"
            | "log-separate-errors"
            | "dontlog-normal",
        )
        | ("log" | "log-format" | "log-tag" | "error-log-format", _) => {
            "the proxy logs to stderr and counts connections in /metrics instead of logging each \
             one"
        }
        ("option", "log-health-checks") => {
            "the proxy logs each backend's up/down transitions and counts check failures by \
             reason in /metrics"
        }
        ("option", "redispatch") | ("retries" | "retry-on", _) => {
            "a client whose connection to the master fails is closed (counted as \
             backend_connect) and reconnects; there is no other server to try"
        }
        ("option", "tcpka" | "clitcpka" | "srvtcpka")
        | (
            "clitcpka-cnt" | "clitcpka-idle" | "clitcpka-intvl" | "srvtcpka-cnt" | "srvtcpka-idle"
            | "srvtcpka-intvl",
            _,
        ) => "the proxy does not enable TCP keepalive on relayed connections",
        ("option", "splice-auto" | "splice-request" | "splice-response") => {
            "relay = \"auto\" (the default) splices bulk transfers by itself"
        }
        (
            "hash-type"
            | "stick-table"
            | "stick"
            | "cookie"
            | "persist"
            | "fullconn"
            | "hash-balance-factor"
            | "use-server",
            _,
        )
        | ("option", "persist" | "allbackups") => {
            "there is one destination, the master, so there is no server choice to make"
        }
        ("tcp-request" | "tcp-response" | "acl", _) => {
            "the proxy has no ACLs or rules; restrict clients with a NetworkPolicy \
             (deploy/kubernetes/base/networkpolicy.yaml)"
        }
        ("rate-limit", _) => {
            "the proxy has no rate limit; max_connections bounds concurrent clients"
        }
        ("backlog", _) => "the proxy uses the default listen backlog",
        ("monitor-uri" | "monitor", _) => "the admin listener's /readyz serves that purpose",
        ("email-alert", _) => "use the alerts in deploy/prometheus/alerts.yaml",
        ("source", _) => "the proxy connects from the pod's own address",
        ("stats", _) if is_backend => "the admin listener's /status and /metrics replace it",
        ("stats", _) => "the admin listener's /status and /metrics replace the stats page",
        (
            "http-request"
            | "http-response"
            | "http-check"
            | "http-after-response"
            | "redirect"
            | "errorfile"
            | "errorloc"
            | "compression"
            | "capture",
            _,
        )
        | (
            "option",
            "forwardfor"
            | "http-server-close"
            | "httpclose"
            | "http-keep-alive"
            | "http-buffer-request"
            | "originalto",
        ) => "the proxy relays TCP, not HTTP",
        _ => "the proxy has no counterpart for it",
    };
    let safe = !matches!(
        w0,
        "stats"
            | "http-request"
            | "http-response"
            | "http-check"
            | "http-after-response"
            | "external-check"
            | "user"
            | "tcp-request"
            | "tcp-response"
            | "acl"
    );
    Some((key, safe, reason))
}
