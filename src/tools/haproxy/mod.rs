//! `import-haproxy`: turns the HAProxy configuration this proxy replaces (TCP mode, `tcp-check`
//! rules looking for `role:master`, in front of Redis) into this proxy's TOML.
//!
//! The file is read the way HAProxy reads it: sections, words cut at blanks, `"weak"` and
//! `'strong'` quoting, `\` escapes (`\ `, `\r`, `\n`, `\xNN`), `#` comments, and the `defaults`
//! section each proxy inherits from (the latest one before it, or the one named by `from`).
//! From all the backends it picks the one that serves the Redis master (its checks look for
//! `role:master`, or a frontend bound to port 6379 uses it) and maps what has a counterpart:
//! server addresses, `inter`/`fall`/`rise`, the check and connect timeouts, `maxconn`, the
//! `bind` addresses, and the `AUTH` the checks send. A second backend of sentinels (servers or
//! frontend on 26379) becomes `[sentinel]` with its listener (`sentinel.listen`) and check
//! interval. Everything else gets one warning that
//! says why it has no counterpart, so the operator reviews a short list instead of the file.
//!
//! A password is never copied: a literal `AUTH` password becomes `password_env` plus a
//! warning, warnings never quote the words that can hold one, and as a last guard every
//! secret the file holds is masked in the warnings. The result is checked with the real
//! [`Config::parse`](crate::config::Config::parse) before it is returned, so what `import`
//! gives back is a file `check` accepts.
//!
//! The steps, in the order [`import`] runs them: `sections.rs` (the file as sections of lines,
//! cut into words by `lexer.rs`; `values.rs` reads the formats of their values), `pick.rs` (which
//! backend serves the master), then what is mapped: `mapping.rs` (listeners, admin, sentinel,
//! limits), `servers.rs`, `checks.rs` (health settings and `tcp-check` rules), `unmapped.rs` (one
//! warning per keyword without a counterpart; all warnings go through `warnings.rs`, which masks
//! secrets), and `render.rs` (the TOML, validated).

mod checks;
mod lexer;
mod mapping;
mod pick;
mod render;
mod sections;
mod servers;
mod unmapped;
mod values;
mod warnings;

use std::time::Duration;

use crate::config::ConfigError;
use checks::{map_checks, map_health};
use mapping::{map_admin, map_limits, map_listen, map_sentinel, Out};
use pick::choose;
use render::{render, validate};
use sections::parse;
use servers::{map_servers, server_notes};
use unmapped::scan_unmapped;
use warnings::{collect_secrets, Warnings};

/// The environment variable the imported `[auth]` reads the password from: the one the
/// Deployment in `deploy/kubernetes/base/deployment.yaml` fills from its Secret.
pub const PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// The first line of every imported file.
pub const HEADER: &str =
    "# Imported from a HAProxy configuration by redis-master-proxy import-haproxy";

/// Redis's port: assumed for a `server` without one, and how the client frontend is recognised.
const REDIS_PORT: u16 = 6379;

/// Sentinel's port: how a backend of sentinels is recognised (its servers, or the frontend
/// that reaches it, on this port).
const SENTINEL_PORT: u16 = 26379;

/// The name `[sentinel] master_name` gets on import: HAProxy never names the master group,
/// so the importer writes Sentinel's own default and says so.
const SENTINEL_MASTER_NAME: &str = "mymaster";

/// What HAProxy uses when a server sets no `inter`, `rise` or `fall`.
const HAPROXY_INTER: Duration = Duration::from_secs(2);

const HAPROXY_RISE: u32 = 2;

const HAPROXY_FALL: u32 = 3;

/// Bounds of the proxy's own settings (see `config.rs`): the smallest check interval, and the
/// longest duration a setting accepts.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// A converted configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The proxy's configuration, starting with [`HEADER`]; `check --config` accepts it once
    /// [`PASSWORD_ENV`] is set (when it has an `[auth]` section).
    pub toml: String,
    /// What was not carried over, what was guessed, and what the operator has to do; one
    /// sentence each, never a secret.
    pub warnings: Vec<String>,
}

/// Why a HAProxy configuration could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// HAProxy itself would refuse the line (an unterminated quote).
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// No backend with a server this proxy can route to.
    #[error("no usable backend: {0}")]
    NoBackend(String),
    /// The generated TOML failed the proxy's own validation: a bug in this importer, reported
    /// rather than handing over a file `check` would refuse.
    #[error(
        "the generated configuration does not validate ({0}); this is a bug in import-haproxy"
    )]
    Invalid(ConfigError),
}

/// Converts the text of a `haproxy.cfg` into this proxy's TOML plus warnings. Pure apart from
/// reading [`PASSWORD_ENV`] while validating the result (when it is unset, everything but the
/// password's presence is still checked).
pub fn import(text: &str) -> Result<Import, ImportError> {
    let mut w = Warnings::default();
    let secs = parse(text, &mut w)?;
    collect_secrets(&secs, &mut w);
    let pick = choose(&secs, &mut w)?;
    let backend = &secs[pick.backend];

    let mut out = Out {
        origin: match pick.frontend {
            Some(f) if f != pick.backend => {
                format!("{}, reached through {}", backend.label(), secs[f].label())
            }
            _ => backend.label(),
        },
        ..Out::default()
    };
    map_listen(&secs, &pick, &mut out, &mut w);
    map_admin(&secs, &pick, &mut out, &mut w);
    let servers = map_servers(&secs, pick.backend, &mut out, &mut w)?;
    map_health(&secs, pick.backend, &servers, &mut out, &mut w);
    map_limits(&secs, &pick, &mut out, &mut w);
    map_checks(&secs, pick.backend, &servers, &mut out, &mut w);
    server_notes(&secs, pick.backend, &servers, &mut w);
    scan_unmapped(&secs, &pick, &mut w);
    map_sentinel(&secs, &pick, &mut out, &mut w);

    let (body, auth) = render(&out);
    let toml = format!("{HEADER}\n{body}{auth}");
    validate(&body, &toml)?;
    Ok(Import {
        toml,
        warnings: w.finish(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::lexer::{split_words, Word};
    use super::sections::{lookup, parse};
    use super::values::{
        env_ref, haproxy_time, parse_bind, parse_server_addr, redis_commands, to_dur, unhex,
        PortForm,
    };
    use super::warnings::Warnings;

    fn texts(words: &[Word]) -> Vec<&str> {
        words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn words_are_cut_like_haproxy_does() {
        let cases: &[(&str, &[&str])] = &[
            (
                "  server r0 host:6379 check",
                &["server", "r0", "host:6379", "check"],
            ),
            (
                "tcp-check send info\\ replication\\r\\n",
                &["tcp-check", "send", "info replication\r\n"],
            ),
            (
                "tcp-check send \"AUTH ${PW}\\r\\n\"",
                &["tcp-check", "send", "AUTH ${PW}\r\n"],
            ),
            (
                "tcp-check expect string 'role:master'",
                &["tcp-check", "expect", "string", "role:master"],
            ),
            ("bind :6379 # the clients", &["bind", ":6379"]),
            ("x a\\#b \"c # d\"", &["x", "a#b", "c # d"]),
            ("x \\x41\\x4g", &["x", "A\\x4g"]),
            ("x 'a\\nb'", &["x", "a\\nb"]),
            ("# only a comment", &[]),
            ("\t", &[]),
            ("x \"\"", &["x", ""]),
        ];
        for (line, want) in cases {
            let got = split_words(line).unwrap();
            assert_eq!(texts(&got), *want, "{line:?}");
        }
        assert!(split_words("x \"open").is_err());
        assert!(split_words("x 'open").is_err());
        let quoted = split_words("send \"${A}\" ${B}").unwrap();
        assert!(quoted[1].dquoted && !quoted[2].dquoted);
    }

    #[test]
    fn haproxy_times() {
        let ms = Duration::from_millis;
        let cases: &[(&str, Option<Duration>)] = &[
            ("1000", Some(ms(1000))),
            ("250ms", Some(ms(250))),
            ("3s", Some(ms(3000))),
            ("2m", Some(ms(120_000))),
            ("6h", Some(ms(6 * 3_600_000))),
            ("1d", Some(ms(86_400_000))),
            ("1500us", Some(Duration::from_micros(1500))),
            ("", None),
            ("s", None),
            ("1x", None),
            ("1.5s", None),
            ("-1s", None),
        ];
        for (s, want) in cases {
            assert_eq!(haproxy_time(s).ok(), *want, "{s:?}");
        }
        assert_eq!(to_dur(Duration::from_micros(1500)).to_string(), "2ms");
        assert_eq!(to_dur(Duration::from_millis(3000)).to_string(), "3s");
    }

    #[test]
    fn bind_addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("*:6379", Some("0.0.0.0:6379")),
            (":6379", Some("0.0.0.0:6379")),
            ("0.0.0.0:6379", Some("0.0.0.0:6379")),
            ("127.0.0.1:6380", Some("127.0.0.1:6380")),
            ("[::]:6379", Some("[::]:6379")),
            (":::6379", Some("[::]:6379")),
            ("ipv6@:6379", Some("[::]:6379")),
            ("ipv4@*:6379", Some("0.0.0.0:6379")),
            ("*:6379-6380", Some("0.0.0.0:6379")),
            ("redis-master:6379", None),
            ("unix@/run/redis.sock", None),
            ("/run/redis.sock", None),
            ("fd@${FD}", None),
            ("*", None),
            (":http", None),
        ];
        for (raw, want) in cases {
            let got = parse_bind(raw).ok().map(|(a, _)| a.to_string());
            assert_eq!(got.as_deref(), *want, "{raw:?}");
        }
    }

    #[test]
    fn server_addresses() {
        let cases: &[(&str, Option<(&str, PortForm)>)] = &[
            (
                "redis-0.redis:6379",
                Some(("redis-0.redis:6379", PortForm::Given)),
            ),
            (
                "redis-0.redis",
                Some(("redis-0.redis:6379", PortForm::Missing)),
            ),
            (
                "redis-0.redis:",
                Some(("redis-0.redis:6379", PortForm::Missing)),
            ),
            ("10.0.0.5:7000", Some(("10.0.0.5:7000", PortForm::Given))),
            (
                "ipv4@10.0.0.5:7000",
                Some(("10.0.0.5:7000", PortForm::Given)),
            ),
            ("[::1]:6380", Some(("[::1]:6380", PortForm::Given))),
            ("::1:6380", Some(("[::1]:6380", PortForm::Given))),
            ("host:+1", Some(("host:6380", PortForm::Relative(1)))),
            ("${REDIS_HOST}:6379", None),
            ("unix@/tmp/redis.sock", None),
            ("host:0", None),
            ("host:redis", None),
        ];
        for (raw, want) in cases {
            let got = parse_server_addr(raw, 6379)
                .ok()
                .map(|(hp, f)| (hp.to_string(), f));
            let want = want.as_ref().map(|(s, f)| {
                (
                    s.to_string(),
                    match f {
                        PortForm::Given => PortForm::Given,
                        PortForm::Missing => PortForm::Missing,
                        PortForm::Relative(n) => PortForm::Relative(*n),
                    },
                )
            });
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn check_payloads_become_commands() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, Vec<Vec<String>>)] = &[
            ("AUTH pw\r\n", vec![v(&["AUTH", "pw"])]),
            (
                "AUTH user pw\r\nPING\r\n",
                vec![v(&["AUTH", "user", "pw"]), v(&["PING"])],
            ),
            ("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", vec![v(&["AUTH", "pw"])]),
            ("info replication\r\n", vec![v(&["info", "replication"])]),
            ("", vec![]),
        ];
        for (payload, want) in cases {
            assert_eq!(&redis_commands(payload), want, "{payload:?}");
        }
        assert_eq!(unhex("50494e470d0a").as_deref(), Some("PING\r\n"));
        assert_eq!(unhex("5"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn environment_references() {
        assert_eq!(env_ref("${REDIS_PASSWORD}"), Some(("REDIS_PASSWORD", None)));
        assert_eq!(env_ref("$PW"), Some(("PW", None)));
        assert_eq!(env_ref("${PW-fallback}"), Some(("PW", Some("fallback"))));
        for not in ["pw", "${}", "$1A", "${A", "a$B"] {
            assert_eq!(env_ref(not), None, "{not}");
        }
    }

    #[test]
    fn defaults_are_inherited_latest_or_named() {
        let text = "defaults base\n  timeout check 1s\nbackend a\n  server s h:1\n\
                    defaults other\n  timeout check 2s\nbackend b from base\n  server s h:1\n\
                    backend c\n  server s h:1\n";
        let secs = parse(text, &mut Warnings::default()).unwrap();
        let check = |name: &str| {
            let i = secs.iter().position(|s| s.name == name).unwrap();
            lookup(&secs, i, &["timeout", "check"]).map(|(l, _)| l.w(2).to_string())
        };
        assert_eq!(check("a").as_deref(), Some("1s"));
        assert_eq!(check("b").as_deref(), Some("1s"));
        assert_eq!(check("c").as_deref(), Some("2s"));
    }

    #[test]
    fn continued_lines_are_joined() {
        let secs = parse(
            "backend b\n  server r0 \\\n    host:6379 check\n",
            &mut Warnings::default(),
        )
        .unwrap();
        assert_eq!(
            texts(&secs[0].lines[0].words),
            ["server", "r0", "host:6379", "check"]
        );
    }

    #[test]
    fn secrets_are_masked_in_warnings() {
        let mut w = Warnings::default();
        w.secret("hunter22");
        w.secret("ab");
        w.push("contains hunter22 and ab".into());
        assert_eq!(w.finish(), ["contains *** and ab"]);
    }
}
