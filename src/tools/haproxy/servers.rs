//! `server` lines: their keywords, the backends they become, and notes on what has no
//! counterpart.

use std::collections::BTreeMap;

use super::lexer::{show_words, Word};
use super::mapping::Out;
use super::sections::{chain, Kind, Section};
use super::values::{parse_server_addr, PortForm};
use super::warnings::Warnings;
use super::{ImportError, REDIS_PORT};

/// One server parameter (`inter 1s`, `check`), and where it was written.
#[derive(Clone, Debug)]
pub(super) struct Param {
    pub(super) kw: String,
    pub(super) args: Vec<String>,
    /// `server lines`, or `default-server in backend x` / `… in defaults`.
    pub(super) src: String,
}

impl Param {
    pub(super) fn show(&self) -> String {
        let words: Vec<Word> = std::iter::once(&self.kw)
            .chain(self.args.iter())
            .map(|t| Word {
                text: t.clone(),
                dquoted: false,
            })
            .collect();
        show_words(&words)
    }
}

/// How many words follow a server keyword (configuration manual §5.2); `None`: unknown.
pub(super) fn server_kw_arity(kw: &str) -> Option<usize> {
    const FLAGS: &[&str] = &[
        "agent-check",
        "allow-0rtt",
        "backup",
        "check",
        "check-send-proxy",
        "check-ssl",
        "check-via-socks4",
        "disabled",
        "enabled",
        "force-sslv3",
        "force-tlsv10",
        "force-tlsv11",
        "force-tlsv12",
        "force-tlsv13",
        "no-agent-check",
        "no-backup",
        "no-check",
        "no-check-ssl",
        "no-send-proxy",
        "no-send-proxy-v2",
        "no-send-proxy-v2-ssl",
        "no-send-proxy-v2-ssl-cn",
        "no-ssl",
        "no-ssl-reuse",
        "no-sslv3",
        "no-tls-tickets",
        "no-tlsv10",
        "no-tlsv11",
        "no-tlsv12",
        "no-tlsv13",
        "no-verifyhost",
        "no-tfo",
        "non-stick",
        "send-proxy",
        "send-proxy-v2",
        "send-proxy-v2-ssl",
        "send-proxy-v2-ssl-cn",
        "ssl",
        "ssl-reuse",
        "stick",
        "tfo",
        "tls-tickets",
    ];
    const ONE: &[&str] = &[
        "addr",
        "agent-send",
        "agent-inter",
        "agent-addr",
        "agent-port",
        "alpn",
        "ca-file",
        "check-alpn",
        "check-proto",
        "check-sni",
        "ciphers",
        "ciphersuites",
        "cookie",
        "crl-file",
        "crt",
        "error-limit",
        "fall",
        "id",
        "init-addr",
        "inter",
        "fastinter",
        "downinter",
        "log-proto",
        "maxconn",
        "maxqueue",
        "max-reuse",
        "minconn",
        "namespace",
        "npn",
        "observe",
        "on-error",
        "on-marked-down",
        "on-marked-up",
        "pool-low-conn",
        "pool-max-conn",
        "pool-purge-delay",
        "port",
        "proto",
        "redir",
        "rise",
        "resolve-opts",
        "resolve-prefer",
        "resolve-net",
        "resolvers",
        "proxy-v2-options",
        "slowstart",
        "sni",
        "source",
        "usesrc",
        "interface",
        "ssl-max-ver",
        "ssl-min-ver",
        "socks4",
        "tcp-ut",
        "track",
        "verify",
        "verifyhost",
        "weight",
        "ws",
        "curves",
        "sigalgs",
        "client-sigalgs",
        "guid",
        "hash-key",
        "init-state",
        "shard",
    ];
    if FLAGS.contains(&kw) {
        Some(0)
    } else if ONE.contains(&kw) {
        Some(1)
    } else {
        None
    }
}

pub(super) fn server_params(words: &[Word], src: &str) -> Vec<Param> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let kw = words[i].text.clone();
        let n = server_kw_arity(&kw).unwrap_or(0);
        let args = words[i + 1..words.len().min(i + 1 + n)]
            .iter()
            .map(|x| x.text.clone())
            .collect();
        out.push(Param {
            kw,
            args,
            src: src.to_string(),
        });
        i += 1 + n;
    }
    out
}

/// A server this proxy will check.
pub(super) struct Server {
    pub(super) name: String,
    /// `default-server` parameters (outermost defaults first), then the server's own: the
    /// last one of a keyword wins, as in HAProxy.
    pub(super) params: Vec<Param>,
}

impl Server {
    pub(super) fn param(&self, kw: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.kw == kw)
    }

    /// The last of a flag and its negation wins (`check` / `no-check`).
    pub(super) fn flag(&self, on: &str, off: &str) -> bool {
        self.params
            .iter()
            .rev()
            .find(|p| p.kw == on || p.kw == off)
            .is_some_and(|p| p.kw == on)
    }

    /// Each keyword once, with its winning value.
    pub(super) fn effective(&self) -> Vec<&Param> {
        let mut out: Vec<&Param> = Vec::new();
        for p in self.params.iter().rev() {
            if !out.iter().any(|q| q.kw == p.kw) {
                out.push(p);
            }
        }
        out.reverse();
        out
    }
}

pub(super) fn map_servers(
    secs: &[Section],
    idx: usize,
    out: &mut Out,
    w: &mut Warnings,
) -> Result<Vec<Server>, ImportError> {
    let b = &secs[idx];
    let mut defaults: Vec<Param> = Vec::new();
    for s in chain(secs, idx).into_iter().rev() {
        let src = format!("default-server in {}", secs[s].label());
        for l in secs[s].lines.iter().filter(|l| l.is(&["default-server"])) {
            defaults.extend(server_params(&l.words[1..], &src));
        }
    }
    let assumed = out.listen.as_ref().map_or(REDIS_PORT, |(a, _)| a.port());
    let mut servers: Vec<Server> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for l in &b.lines {
        if l.is(&["server-template"]) {
            let msg = format!(
                "not mapped: `server-template {} {} {}` (line {}), because the proxy needs one \
                 entry per Redis server: list each pod's own name (e.g. \
                 redis-0.<headless service>:6379) in `backends`",
                l.w(1),
                l.w(2),
                l.w(3),
                l.no
            );
            refused.push(format!("server-template {} (line {})", l.w(1), l.no));
            w.push(msg);
            continue;
        }
        if !l.is(&["server"]) {
            continue;
        }
        let name = l.w(1).to_string();
        let raw = l.w(2);
        match parse_server_addr(raw, assumed) {
            Ok((hp, form)) => {
                match form {
                    PortForm::Given => {}
                    PortForm::Missing => w.push(format!(
                        "server `{name}` (`{raw}`) has no port: HAProxy used the port the client \
                         connected to; assumed {}",
                        hp.port
                    )),
                    PortForm::Relative(_) => w.push(format!(
                        "server `{name}` (`{raw}`) has a port relative to the client's: assumed {}",
                        hp.port
                    )),
                }
                if let Some((_, first)) = out.backends.iter().find(|(x, _)| *x == hp) {
                    w.push(format!(
                        "server `{name}` has the same address as `{first}` ({hp}); listed once"
                    ));
                    continue;
                }
                let mut params = defaults.clone();
                params.extend(server_params(
                    l.words.get(3..).unwrap_or_default(),
                    "server lines",
                ));
                out.backends.push((hp, name.clone()));
                servers.push(Server { name, params });
            }
            Err(e) => {
                w.push(format!(
                    "not mapped: server `{name}` (line {}), because {e}",
                    l.no
                ));
                refused.push(format!("server {name} (line {}): {e}", l.no));
            }
        }
    }
    if servers.is_empty() {
        return Err(ImportError::NoBackend(format!(
            "`{}` has no server the proxy can use: {}",
            b.label(),
            refused.join("; ")
        )));
    }
    for s in servers.iter().filter(|s| s.flag("disabled", "enabled")) {
        w.push(format!(
            "server `{}` is disabled in HAProxy (maintenance) but imported as a candidate: the \
             proxy has no maintenance state; remove it from `backends` to keep it out",
            s.name
        ));
    }
    Ok(servers)
}

/// The value all servers agree on (else the first server's, with a warning), and where it was
/// written.
pub(super) fn server_value<'a>(
    servers: &'a [Server],
    kw: &str,
    w: &mut Warnings,
) -> Option<&'a Param> {
    let first = servers[0].param(kw);
    let differ: Vec<String> = servers
        .iter()
        .filter(|s| s.param(kw).map(|p| &p.args) != first.map(|p| &p.args))
        .map(|s| {
            let v = s
                .param(kw)
                .map_or("unset".to_string(), |p| p.args.join(" "));
            format!("{v} on `{}`", s.name)
        })
        .collect();
    if !differ.is_empty() {
        let v = first.map_or("unset".to_string(), |p| p.args.join(" "));
        w.push(format!(
            "the servers disagree on `{kw}` ({}); the proxy has one setting for all backends: \
             used `{}`'s {v}",
            differ.join(", "),
            servers[0].name
        ));
    }
    first
}

/// Server options with a meaning that is kept or needs no setting, and those that are lost.
pub(super) fn server_notes(secs: &[Section], idx: usize, servers: &[Server], w: &mut Warnings) {
    let mut resolvers = secs.iter().any(|s| s.kind == Kind::Resolvers);
    let mut unmapped: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for s in servers {
        for p in s.effective() {
            let lost = match p.kw.as_str() {
                "check" | "no-check" | "inter" | "fall" | "rise" | "disabled" | "enabled" => false,
                "init-addr" | "resolvers" => {
                    resolvers = true;
                    false
                }
                "on-marked-down" if p.args.first().is_some_and(|a| a == "shutdown-sessions") => {
                    w.push(
                        "`on-marked-down shutdown-sessions` needs no setting: the proxy always \
                         drains the sessions bound to an old master when the master changes"
                            .into(),
                    );
                    false
                }
                _ => true,
            };
            if lost {
                let key = (p.show(), p.src.clone());
                if !unmapped.contains_key(&key) {
                    order.push(key.clone());
                }
                unmapped.entry(key).or_default().push(&s.name);
            }
        }
    }
    for key in order {
        let names = &unmapped[&key];
        let (shown, src) = &key;
        let kw = shown.split(' ').next().unwrap_or("");
        let place = if src == "server lines" {
            format!("on server {}", names.join(", "))
        } else {
            src.clone()
        };
        w.push(format!(
            "not mapped: `{shown}` ({place}), because {}",
            server_reason(kw)
        ));
    }
    if resolvers {
        w.push(format!(
            "`resolvers` and `init-addr` need no setting: the proxy resolves each backend's name \
             again at every check with the system resolver (/etc/resolv.conf), and a name that \
             does not resolve yet only fails that backend's check (`{}`)",
            secs[idx].label()
        ));
    }
}

pub(super) fn server_reason(kw: &str) -> &'static str {
    match kw {
        "maxconn" | "maxqueue" | "minconn" => {
            "HAProxy queued clients beyond a server's maxconn; the proxy only bounds clients \
             overall (max_connections), and Redis's maxclients bounds each server"
        }
        "weight" => "every client goes to the one master, so there is nothing to weigh",
        "slowstart" => "a new master gets every client at once; there is no ramp-up",
        "backup" | "no-backup" => {
            "every backend is a candidate and the proxy picks the master by its role, not by \
             order"
        }
        k if k.starts_with("agent-") || k == "no-agent-check" => {
            "the proxy decides from INFO replication alone"
        }
        k if k.contains("send-proxy") || k == "proxy-v2-options" => {
            "the proxy never sends a PROXY protocol header"
        }
        "ssl" | "check-ssl" | "verify" | "verifyhost" | "ca-file" | "crt" | "crl-file" | "sni"
        | "check-sni" | "alpn" | "check-alpn" | "ciphers" | "ciphersuites" | "ssl-min-ver"
        | "ssl-max-ver" | "ssl-reuse" | "no-ssl-reuse" | "npn" | "curves" | "sigalgs" => {
            "the proxy connects to Redis in plain TCP (no TLS)"
        }
        "fastinter" | "downinter" => "the proxy checks every backend at one interval",
        "port" | "addr" => "the proxy checks each backend at its own address and port",
        "observe" | "on-error" | "error-limit" => {
            "only health checks mark a backend down, never errors in client traffic"
        }
        "on-marked-down" | "on-marked-up" => {
            "the proxy drains the sessions of an old master on every master change and has no \
             other actions"
        }
        "resolve-prefer" | "resolve-net" | "resolve-opts" => {
            "the proxy uses the first address the system resolver returns"
        }
        "track" => "each backend is checked on its own",
        "cookie" | "redir" | "stick" | "non-stick" => {
            "every client goes to the one master, so there is no server choice to make"
        }
        "source" | "usesrc" | "interface" | "namespace" => {
            "the proxy connects from the pod's own address"
        }
        k if server_kw_arity(k).is_none() => "it is not a server option HAProxy 2.6 documents",
        _ => "the proxy has no counterpart for it",
    }
}
