//! The health settings (`inter`, `fall`, `rise`, timeouts) and the `tcp-check` rules: what the
//! checks send (`AUTH`) and expect.

use std::time::Duration;

use super::lexer::show_words;
use super::mapping::{AuthOut, Out};
use super::pick::{checks_role_master, tcp_check_lines};
use super::sections::{chain, global, lookup, Section};
use super::servers::{server_value, Server};
use super::values::{env_ref, haproxy_time, redis_commands, to_dur, unhex};
use super::warnings::Warnings;
use super::{HAPROXY_FALL, HAPROXY_INTER, HAPROXY_RISE, MAX_DURATION, MIN_INTERVAL, PASSWORD_ENV};
use crate::config::Dur;

pub(super) fn map_health(
    secs: &[Section],
    idx: usize,
    servers: &[Server],
    out: &mut Out,
    w: &mut Warnings,
) {
    let mut defaulted: Vec<String> = Vec::new();
    let mut interval = match server_value(servers, "inter", w) {
        Some(p) => match haproxy_time(p.args.first().map_or("", String::as_str)) {
            Ok(d) if !d.is_zero() => (d, format!("inter {} ({})", p.args.join(" "), p.src)),
            _ => {
                w.push(format!(
                    "`inter {}` is not a valid interval; used HAProxy's default 2s",
                    p.args.join(" ")
                ));
                (HAPROXY_INTER, "HAProxy's default inter".to_string())
            }
        },
        None => {
            defaulted.push("inter 2s".into());
            (HAPROXY_INTER, "HAProxy's default inter".to_string())
        }
    };
    interval.0 = to_dur(interval.0).0;
    if interval.0 < MIN_INTERVAL || interval.0 > MAX_DURATION {
        let clamped = interval.0.clamp(MIN_INTERVAL, MAX_DURATION);
        w.push(format!(
            "health.interval: {} is outside what the proxy accepts; set to {}",
            Dur(interval.0),
            Dur(clamped)
        ));
        interval = (clamped, format!("{}, adjusted", interval.1));
    }

    let count =
        |kw: &str, default: u32, w: &mut Warnings, defaulted: &mut Vec<String>| match server_value(
            servers, kw, w,
        ) {
            Some(p) => match p.args.first().and_then(|a| a.parse::<u32>().ok()) {
                Some(n) if n >= 1 => (n, format!("{kw} {n} ({})", p.src)),
                _ => {
                    w.push(format!(
                        "`{kw} {}` is not a count of at least 1; used HAProxy's default {default}",
                        p.args.join(" ")
                    ));
                    (default, format!("HAProxy's default {kw}"))
                }
            },
            None => {
                defaulted.push(format!("{kw} {default}"));
                (default, format!("HAProxy's default {kw}"))
            }
        };
    let rise = count("rise", HAPROXY_RISE, w, &mut defaulted);
    let fall = count("fall", HAPROXY_FALL, w, &mut defaulted);
    if !defaulted.is_empty() {
        w.push(format!(
            "the servers do not set {}: HAProxy's defaults were kept so the checks behave as \
             before (the proxy's own defaults are interval 1s, rise 2, fall 1)",
            defaulted.join(", ")
        ));
    }

    // HAProxy bounds a check by `timeout check` (after the connect), or by `inter` when it is
    // unset. The proxy needs its bound below the interval, or checks would overlap.
    let half = to_dur(interval.0 / 2).0.max(Duration::from_millis(1));
    let half = if half >= interval.0 {
        interval.0 - Duration::from_millis(1)
    } else {
        half
    };
    let check =
        lookup(secs, idx, &["timeout", "check"]).and_then(|(l, s)| match haproxy_time(l.w(2)) {
            Ok(d) if !d.is_zero() => Some((d, format!("timeout check {} ({})", l.w(2), s.label()))),
            Ok(_) => None,
            Err(e) => {
                w.push(format!("`timeout check`: {e}; ignored"));
                None
            }
        });
    let (wanted, src, from_inter) = match check {
        Some((d, src)) => (to_dur(d).0, src, false),
        None => (
            interval.0,
            "no timeout check: HAProxy used inter".to_string(),
            true,
        ),
    };
    let timeout =
        if wanted > half {
            w.push(format!(
            "health.timeout: HAProxy bounded each check by {} ({}), but the proxy needs the check \
             timeout shorter than the interval ({}) so checks never overlap: set to {} (half the \
             interval)",
            Dur(wanted),
            if from_inter { "inter, since timeout check is unset" } else { "timeout check" },
            Dur(interval.0),
            Dur(half)
        ));
            (half, format!("{src}; shortened to half the interval"))
        } else {
            (wanted, src)
        };

    out.interval = Some((Dur(interval.0), interval.1));
    out.timeout = Some((Dur(timeout.0), timeout.1));
    out.rise = Some(rise);
    out.fall = Some(fall);
}

/// What a HAProxy check did, told against what the proxy's check does.
pub(super) fn map_checks(
    secs: &[Section],
    idx: usize,
    servers: &[Server],
    out: &mut Out,
    w: &mut Warnings,
) {
    let b = &secs[idx];
    const CHECK_OPTIONS: &[&str] = &[
        "tcp-check",
        "redis-check",
        "httpchk",
        "mysql-check",
        "pgsql-check",
        "ldap-check",
        "smtpchk",
        "ssl-hello-chk",
        "spop-check",
        "external-check",
    ];
    // The check type the backend declares last (its own before its defaults'); `no option`
    // turns it off.
    let kind: Option<String> = chain(secs, idx)
        .into_iter()
        .find_map(|s| {
            secs[s].lines.iter().rev().find_map(|l| {
                if l.w(0) == "option" && CHECK_OPTIONS.contains(&l.w(1)) {
                    Some(Some(l.w(1).to_string()))
                } else if l.is(&["no", "option"]) && CHECK_OPTIONS.contains(&l.w(2)) {
                    Some(None)
                } else {
                    None
                }
            })
        })
        .flatten();
    let role = checks_role_master(secs, idx);
    let checked: Vec<&str> = servers
        .iter()
        .filter(|s| s.flag("check", "no-check"))
        .map(|s| s.name.as_str())
        .collect();
    let after = "the proxy checks every backend with INFO replication and sends clients only to \
                 the one master";
    if checked.is_empty() {
        w.push(format!(
            "HAProxy did not health-check the servers of `{}` (no `check` on them); {after}",
            b.label()
        ));
    } else if !role {
        let what = match kind.as_deref() {
            Some("redis-check") => {
                "`option redis-check` only sends PING, so replicas passed too".to_string()
            }
            Some("tcp-check") => "its tcp-check rules do not look for role:master".to_string(),
            Some(other) => format!("`option {other}` is not a Redis role check"),
            None => "HAProxy only checked that a TCP connection opens".to_string(),
        };
        w.push(format!(
            "{what}; {after}. Right for a master endpoint; not a replacement if this backend \
             spread reads over replicas"
        ));
    }
    if checked.len() < servers.len() && !checked.is_empty() {
        let unchecked: Vec<&str> = servers
            .iter()
            .filter(|s| !s.flag("check", "no-check"))
            .map(|s| s.name.as_str())
            .collect();
        w.push(format!(
            "HAProxy did not check {}; the proxy checks every backend",
            unchecked.join(", ")
        ));
    }

    let mut auths: Vec<(Option<String>, String, bool, usize)> = Vec::new();
    for l in tcp_check_lines(secs, idx) {
        match l.w(1) {
            "connect" if l.words.len() > 2 => {
                let opts = show_words(&l.words[2..]);
                w.push(format!(
                    "not mapped: `tcp-check connect {opts}`, because the proxy checks each \
                     backend at its own address and port, in plain TCP"
                ));
            }
            "send" | "send-lf" | "send-binary" | "send-binary-lf" => {
                // The data is one word; `comment <msg>` may follow.
                let end = l
                    .words
                    .iter()
                    .skip(2)
                    .position(|x| x.text == "comment")
                    .map_or(l.words.len(), |p| p + 2);
                let data = l.words[2..end]
                    .iter()
                    .map(|x| x.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let dquoted = l.words[2..end].iter().any(|x| x.dquoted);
                let payload = if l.w(1).starts_with("send-binary") {
                    match unhex(&data) {
                        Some(p) => p,
                        None => {
                            w.push(format!(
                                "line {}: `tcp-check {}` data is not hex digits; ignored",
                                l.no,
                                l.w(1)
                            ));
                            continue;
                        }
                    }
                } else {
                    data
                };
                for cmd in redis_commands(&payload) {
                    let name = cmd[0].to_ascii_uppercase();
                    match name.as_str() {
                        "AUTH" => match cmd.len() {
                            2 => auths.push((None, cmd[1].clone(), dquoted, l.no)),
                            3 => auths.push((Some(cmd[1].clone()), cmd[2].clone(), dquoted, l.no)),
                            _ => {
                                // Not a usable AUTH, but its words may still be a password.
                                for a in &cmd[1..] {
                                    w.secret(a);
                                }
                                w.push(format!(
                                    "line {}: the checks send an AUTH with {} arguments; not \
                                     mapped",
                                    l.no,
                                    cmd.len() - 1
                                ));
                            }
                        },
                        "HELLO" => match cmd.iter().position(|a| a.eq_ignore_ascii_case("AUTH")) {
                            Some(i) if cmd.len() > i + 2 => auths.push((
                                Some(cmd[i + 1].clone()),
                                cmd[i + 2].clone(),
                                dquoted,
                                l.no,
                            )),
                            _ => {}
                        },
                        "PING" | "INFO" | "QUIT" | "ROLE" => {}
                        other => w.push(format!(
                            "not mapped: the checks send `{}` (line {}), because the proxy's \
                             check sends only AUTH and INFO replication",
                            if other.len() > 20 { "a command" } else { other },
                            l.no
                        )),
                    }
                }
            }
            "expect" => {
                let m = l.words.iter().skip(2).position(|x| {
                    matches!(
                        x.text.as_str(),
                        "string" | "rstring" | "binary" | "rbinary" | "string-lf" | "binary-lf"
                    )
                });
                let pattern = m.map_or("", |p| l.w(p + 3));
                let p = pattern.to_ascii_lowercase();
                let known = p.contains("role:master")
                    || ["+ok", "+pong", "pong", "ok", "^\\+ok", "^\\+pong"].contains(&p.as_str());
                if !known {
                    w.push(format!(
                        "not mapped: `{}` (line {}), because the proxy decides from INFO \
                         replication alone",
                        l.show(),
                        l.no
                    ));
                }
            }
            _ => {}
        }
    }

    let Some((user, pw, dquoted, no)) = auths.first().cloned() else {
        return;
    };
    if auths.len() > 1 {
        w.push(format!(
            "the checks send AUTH {} times; the first one (line {no}) was used",
            auths.len()
        ));
    }
    for (_, p, _, _) in &auths {
        if env_ref(p).is_none() {
            w.secret(p);
        }
    }
    let username = match user {
        Some(u) if env_ref(&u).is_some() => {
            w.push(format!(
                "the checks' AUTH user comes from `{u}`; write the ACL user name as \
                 auth.username (it was left out)"
            ));
            None
        }
        Some(u) if u.is_empty() || u.contains(char::is_whitespace) => {
            w.push("the checks' AUTH user name is not a valid ACL user name; left out".into());
            None
        }
        u => u,
    };
    match env_ref(&pw) {
        Some((name, _)) => {
            if name != PASSWORD_ENV {
                w.push(format!(
                    "the checks' AUTH password came from the environment variable {name}; the \
                     imported [auth] reads {PASSWORD_ENV} (set by \
                     deploy/kubernetes/base/deployment.yaml from its Secret): give it the same \
                     value, or change password_env"
                ));
            }
            if !dquoted {
                w.push(format!(
                    "`{pw}` stands outside double quotes in `tcp-check send` (line {no}), where \
                     HAProxy does not expand variables: it was presumably substituted before \
                     HAProxy read the file; if not, HAProxy sent it literally and its AUTH \
                     failed"
                ));
            }
            let defined =
                global(secs).any(|l| (l.is(&["setenv"]) || l.is(&["presetenv"])) && l.w(1) == name);
            if defined {
                w.push(format!(
                    "the password in {name} is set in clear text by `setenv` in the global \
                     section; it was not copied: put it in the environment variable \
                     {PASSWORD_ENV} where the proxy runs, and consider rotating it"
                ));
            }
        }
        None => w.push(format!(
            "the checks send a literal AUTH password (line {no}); it was neither copied nor shown \
             here: put it in the environment variable {PASSWORD_ENV} where the proxy runs (in \
             Kubernetes the Secret redis-master-proxy-auth, see \
             deploy/kubernetes/base/secret.example.yaml), and since it sat in clear text in \
             haproxy.cfg, consider rotating it"
        )),
    }
    w.push(format!(
        "[auth]: the proxy's checks send AUTH {}with the password read from the environment \
         variable {PASSWORD_ENV} at start; `check` and `run` refuse the file while it is unset",
        username
            .as_deref()
            .map_or(String::new(), |u| format!("as user `{u}` "))
    ));
    out.auth = Some(AuthOut { username });
}
