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
//! [`Config::parse`] before it is returned, so what `import` gives back is a file `check`
//! accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::{Config, ConfigError, Dur, HostPort, Overrides};

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

// ---------------------------------------------------------------------------------------------
// Reading the file.

/// One word of a line, after quotes and escapes are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Word {
    text: String,
    /// Part of it was inside double quotes, the only place HAProxy expands `${VAR}`.
    dquoted: bool,
}

/// One configuration line (continuations joined), cut into words.
#[derive(Clone, Debug)]
struct Line {
    /// 1-based number of its first physical line, for error messages.
    no: usize,
    words: Vec<Word>,
}

impl Line {
    fn w(&self, i: usize) -> &str {
        self.words.get(i).map_or("", |w| w.text.as_str())
    }

    /// Whether the line starts with these words.
    fn is(&self, kws: &[&str]) -> bool {
        kws.iter().enumerate().all(|(i, k)| self.w(i) == *k)
    }

    /// The line as it could be written in HAProxy, for warnings. Never used on lines that can
    /// hold a secret (`tcp-check send`, `stats auth`, `user`, …).
    fn show(&self) -> String {
        show_words(&self.words)
    }
}

fn show_words(words: &[Word]) -> String {
    let mut s = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        for c in w.text.chars() {
            match c {
                ' ' => s.push_str("\\ "),
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", u32::from(c));
                }
                c => s.push(c),
            }
        }
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    Resolvers,
    Other,
}

/// Every section keyword of HAProxy 2.x; a line starting with one of them opens a section.
const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "log-forward",
    "crt-store",
    "traces",
];

#[derive(Debug)]
struct Section {
    kind: Kind,
    keyword: String,
    name: String,
    /// The `defaults` section it takes its initial settings from (index into the sections).
    defaults: Option<usize>,
    lines: Vec<Line>,
}

impl Section {
    /// `backend redis_master`, as written in the file.
    fn label(&self) -> String {
        if self.name.is_empty() {
            self.keyword.clone()
        } else {
            format!("{} {}", self.keyword, self.name)
        }
    }

    fn has_servers(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.is(&["server"]) || l.is(&["server-template"]))
    }

    fn routes_to(&self, backend: &str) -> bool {
        self.lines
            .iter()
            .any(|l| (l.is(&["default_backend"]) || l.is(&["use_backend"])) && l.w(1) == backend)
    }

    /// The TCP addresses of its `bind` lines that parse.
    fn binds(&self) -> Vec<SocketAddr> {
        self.lines
            .iter()
            .filter(|l| l.is(&["bind"]))
            .flat_map(|l| l.w(1).split(','))
            .filter_map(|a| parse_bind(a).ok().map(|(addr, _)| addr))
            .collect()
    }
}

/// Cuts one line into words like HAProxy 2.x (configuration manual §2.2): blanks separate
/// words unless escaped or quoted; `#` starts a comment; environment variables are left as
/// written (`${NAME}`), since only their names matter here.
fn split_words(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut started, mut dq, mut sq, mut had_dq) = (false, false, false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if sq {
            if c == '\'' {
                sq = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                started = true;
                match chars.next() {
                    Some('n') => cur.push('\n'),
                    Some('r') => cur.push('\r'),
                    Some('t') => cur.push('\t'),
                    Some('x') => {
                        let hex: String = chars.clone().take(2).collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(b) if hex.len() == 2 => {
                                cur.push(char::from(b));
                                chars.nth(1);
                            }
                            _ => cur.push_str("\\x"),
                        }
                    }
                    Some(e @ (' ' | '\t' | '#' | '\\' | '\'' | '"' | '$')) => cur.push(e),
                    Some(other) => {
                        cur.push('\\');
                        cur.push(other);
                    }
                    None => cur.push('\\'),
                }
            }
            '"' => {
                dq = !dq;
                started = true;
                had_dq = true;
            }
            '\'' if !dq => {
                sq = true;
                started = true;
            }
            '#' if !dq => break,
            ' ' | '\t' if !dq => {
                if started {
                    words.push(Word {
                        text: std::mem::take(&mut cur),
                        dquoted: had_dq,
                    });
                    started = false;
                    had_dq = false;
                }
            }
            _ => {
                cur.push(c);
                started = true;
            }
        }
    }
    if sq || dq {
        return Err(format!(
            "unterminated {} quote",
            if sq { "single" } else { "double" }
        ));
    }
    if started {
        words.push(Word {
            text: cur,
            dquoted: had_dq,
        });
    }
    Ok(words)
}

/// The file as sections of lines, with each proxy's `defaults` resolved.
fn parse(text: &str, w: &mut Warnings) -> Result<Vec<Section>, ImportError> {
    let mut secs: Vec<Section> = Vec::new();
    let mut last_defaults: Option<usize> = None;
    let mut named_defaults: BTreeMap<String, usize> = BTreeMap::new();
    let mut outside: Vec<usize> = Vec::new();

    let mut physical = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((no, first)) = physical.next() {
        // A line ending in an odd number of backslashes goes on on the next one.
        let mut joined = first.trim_end_matches('\r').to_string();
        while (joined.len() - joined.trim_end_matches('\\').len()) % 2 == 1 {
            joined.pop();
            match physical.next() {
                Some((_, next)) => joined.push_str(next.trim_end_matches('\r')),
                None => break,
            }
        }
        let words =
            split_words(&joined).map_err(|message| ImportError::Syntax { line: no, message })?;
        if words.is_empty() {
            continue;
        }
        let line = Line { no, words };
        if SECTION_KEYWORDS.contains(&line.w(0)) {
            let keyword = line.w(0).to_string();
            let kind = match keyword.as_str() {
                "global" => Kind::Global,
                "defaults" => Kind::Defaults,
                "frontend" => Kind::Frontend,
                "backend" => Kind::Backend,
                "listen" => Kind::Listen,
                "resolvers" => Kind::Resolvers,
                _ => Kind::Other,
            };
            let name = match line.w(1) {
                "from" => String::new(),
                n => n.to_string(),
            };
            let from = line
                .words
                .iter()
                .position(|x| x.text == "from")
                .map(|i| line.w(i + 1).to_string());
            let defaults = match (&from, kind) {
                (Some(f), _) => {
                    let found = named_defaults.get(f).copied();
                    if found.is_none() {
                        w.push(format!(
                            "line {no}: `{keyword} {name}` names defaults `{f}`, which is not \
                             defined before it; its settings were read without defaults"
                        ));
                    }
                    found
                }
                (None, Kind::Frontend | Kind::Backend | Kind::Listen) => last_defaults,
                (None, _) => None,
            };
            let idx = secs.len();
            if kind == Kind::Defaults {
                last_defaults = Some(idx);
                if !name.is_empty() {
                    named_defaults.insert(name.clone(), idx);
                }
            }
            secs.push(Section {
                kind,
                keyword,
                name,
                defaults,
                lines: Vec::new(),
            });
        } else if let Some(s) = secs.last_mut() {
            s.lines.push(line);
        } else {
            outside.push(no);
        }
    }
    if let Some(first) = outside.first() {
        w.push(format!(
            "{} line(s) before the first section (from line {first}) were ignored, as HAProxy \
             refuses them",
            outside.len()
        ));
    }
    Ok(secs)
}

/// The section and then the `defaults` it inherits from, nearest first.
fn chain(secs: &[Section], idx: usize) -> Vec<usize> {
    let mut out = vec![idx];
    let mut cur = secs[idx].defaults;
    // `from` can name a defaults section that itself has `from`: bounded against loops.
    while let Some(d) = cur {
        if out.contains(&d) || out.len() > 16 {
            break;
        }
        out.push(d);
        cur = secs[d].defaults;
    }
    out
}

/// The line that sets `kws` for the proxy `idx`: its own last one, else its defaults'.
fn lookup<'a>(secs: &'a [Section], idx: usize, kws: &[&str]) -> Option<(&'a Line, &'a Section)> {
    chain(secs, idx).into_iter().find_map(|s| {
        secs[s]
            .lines
            .iter()
            .rev()
            .find(|l| l.is(kws))
            .map(|l| (l, &secs[s]))
    })
}

fn global(secs: &[Section]) -> impl Iterator<Item = &Line> {
    secs.iter()
        .filter(|s| s.kind == Kind::Global)
        .flat_map(|s| s.lines.iter())
}

// ---------------------------------------------------------------------------------------------
// Value formats.

/// A HAProxy time: a number with an optional unit among `us`, `ms`, `s`, `m`, `h`, `d`; a bare
/// number is milliseconds (configuration manual §2.5).
fn haproxy_time(s: &str) -> Result<Duration, String> {
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
fn to_dur(d: Duration) -> Dur {
    let ms = d.as_micros().div_ceil(1000);
    Dur(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// A `bind` address: `*:6379`, `:6379`, `0.0.0.0:6379`, `[::]:6379`, `:::6379`, `ipv6@:6379`,
/// `10.0.0.1:6379-6380`. Host names and non-TCP sockets have no `SocketAddr` form: refused.
/// The second value notes what was adapted.
fn parse_bind(raw: &str) -> Result<(SocketAddr, Option<String>), String> {
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
enum PortForm {
    Given,
    /// None: HAProxy connects to the port the client connected to.
    Missing,
    /// `+1` / `-1`: relative to the port the client connected to.
    Relative(i32),
}

/// A `server` address: `host:port`, `host`, `ipv4@10.0.0.1:6379`, `[::1]:6379`, `::1:6379`.
fn parse_server_addr(raw: &str, assumed_port: u16) -> Result<(HostPort, PortForm), String> {
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
fn env_ref(s: &str) -> Option<(&str, Option<&str>)> {
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
fn redis_commands(payload: &str) -> Vec<Vec<String>> {
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
fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML comment holds no control characters.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Warnings and secrets.

#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    /// Values from the file that must never be shown: literal passwords, `stats auth`,
    /// `userlist` passwords, `setenv` values.
    secrets: Vec<String>,
}

impl Warnings {
    fn push(&mut self, s: String) {
        if !self.list.contains(&s) {
            self.list.push(s);
        }
    }

    fn secret(&mut self, s: &str) {
        if !s.is_empty() && !self.secrets.iter().any(|x| x == s) {
            self.secrets.push(s.to_string());
        }
    }

    /// The warnings, with any secret that slipped into one masked. The masking is a second
    /// line of defence: no warning is built from a word that can hold a secret. Very short
    /// values are not masked, since they would garble ordinary words.
    fn finish(mut self) -> Vec<String> {
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.list
            .into_iter()
            .map(|mut s| {
                for secret in self.secrets.iter().filter(|x| x.chars().count() >= 3) {
                    s = s.replace(secret.as_str(), "***");
                }
                s
            })
            .collect()
    }
}

/// Passwords held outside the checks: `stats auth user:password`, `userlist` users,
/// `setenv`/`presetenv` values, `${VAR-default}` defaults.
fn collect_secrets(secs: &[Section], w: &mut Warnings) {
    for l in secs.iter().flat_map(|s| s.lines.iter()) {
        if l.is(&["stats", "auth"]) {
            if let Some((_, pw)) = l.w(2).split_once(':') {
                w.secret(pw);
            }
        } else if l.is(&["user"]) {
            for (i, word) in l.words.iter().enumerate() {
                if matches!(word.text.as_str(), "password" | "insecure-password") {
                    w.secret(l.w(i + 1));
                }
            }
        } else if l.is(&["setenv"]) || l.is(&["presetenv"]) {
            w.secret(l.w(2));
        }
        for word in &l.words {
            if let Some((_, Some(default))) = env_ref(&word.text) {
                w.secret(default);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Which backend.

struct Pick {
    /// The backend (or listen) section whose servers become `backends`.
    backend: usize,
    /// The frontend (or listen) section whose `bind` becomes `listen`.
    frontend: Option<usize>,
    /// A backend (or listen) of sentinels, which becomes `[sentinel]` and its listener.
    sentinel: Option<usize>,
}

/// Whether `idx` is a backend of sentinels: every server it has is on port 26379, or a
/// frontend bound to 26379 sends clients to it.
fn is_sentinel_backend(secs: &[Section], idx: usize) -> bool {
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

fn tcp_check_lines(secs: &[Section], idx: usize) -> Vec<&Line> {
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

fn checks_role_master(secs: &[Section], idx: usize) -> bool {
    tcp_check_lines(secs, idx).iter().any(|l| {
        l.w(1) == "expect"
            && l.words[2..]
                .iter()
                .any(|x| x.text.to_ascii_lowercase().contains("role:master"))
    })
}

/// The frontends that send clients to `idx`: itself when it is a `listen` with a `bind`, then
/// every frontend or listen whose `default_backend`/`use_backend` names it.
fn frontends_of(secs: &[Section], idx: usize) -> Vec<usize> {
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

fn on_redis_port(secs: &[Section], f: usize) -> bool {
    secs[f].binds().iter().any(|a| a.port() == REDIS_PORT)
}

fn choose(secs: &[Section], w: &mut Warnings) -> Result<Pick, ImportError> {
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

// ---------------------------------------------------------------------------------------------
// What is mapped.

#[derive(Default)]
struct Out {
    /// Which HAProxy sections the file came from, for its opening comment.
    origin: String,
    listen: Option<(SocketAddr, String)>,
    admin: Option<(SocketAddr, String)>,
    backends: Vec<(HostPort, String)>,
    max_connections: Option<(usize, String)>,
    connect_timeout: Option<(Dur, String)>,
    interval: Option<(Dur, String)>,
    timeout: Option<(Dur, String)>,
    rise: Option<(u32, String)>,
    fall: Option<(u32, String)>,
    auth: Option<AuthOut>,
    sentinel: Option<SentinelOut>,
}

/// `[sentinel]`, from a backend of sentinels.
struct SentinelOut {
    /// Which HAProxy sections it came from.
    origin: String,
    addresses: Vec<(HostPort, String)>,
    listen: Option<(SocketAddr, String)>,
    interval: (Dur, String),
    timeout: (Dur, String),
}

struct AuthOut {
    /// ACL user of the checks' `AUTH user password`; `None` for `AUTH password`.
    username: Option<String>,
}

fn map_listen(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
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
fn map_sentinel(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
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

fn is_stats(s: &Section) -> bool {
    s.lines.iter().any(|l| {
        (l.w(0) == "stats" && l.w(1) != "socket")
            || (l.is(&["http-request", "use-service"]) && l.w(2).contains("prometheus-exporter"))
    })
}

fn map_admin(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
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

/// One server parameter (`inter 1s`, `check`), and where it was written.
#[derive(Clone, Debug)]
struct Param {
    kw: String,
    args: Vec<String>,
    /// `server lines`, or `default-server in backend x` / `… in defaults`.
    src: String,
}

impl Param {
    fn show(&self) -> String {
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
fn server_kw_arity(kw: &str) -> Option<usize> {
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

fn server_params(words: &[Word], src: &str) -> Vec<Param> {
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
struct Server {
    name: String,
    /// `default-server` parameters (outermost defaults first), then the server's own: the
    /// last one of a keyword wins, as in HAProxy.
    params: Vec<Param>,
}

impl Server {
    fn param(&self, kw: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.kw == kw)
    }

    /// The last of a flag and its negation wins (`check` / `no-check`).
    fn flag(&self, on: &str, off: &str) -> bool {
        self.params
            .iter()
            .rev()
            .find(|p| p.kw == on || p.kw == off)
            .is_some_and(|p| p.kw == on)
    }

    /// Each keyword once, with its winning value.
    fn effective(&self) -> Vec<&Param> {
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

fn map_servers(
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
fn server_value<'a>(servers: &'a [Server], kw: &str, w: &mut Warnings) -> Option<&'a Param> {
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

fn map_health(secs: &[Section], idx: usize, servers: &[Server], out: &mut Out, w: &mut Warnings) {
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

fn map_limits(secs: &[Section], pick: &Pick, out: &mut Out, w: &mut Warnings) {
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

/// What a HAProxy check did, told against what the proxy's check does.
fn map_checks(secs: &[Section], idx: usize, servers: &[Server], out: &mut Out, w: &mut Warnings) {
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

/// Server options with a meaning that is kept or needs no setting, and those that are lost.
fn server_notes(secs: &[Section], idx: usize, servers: &[Server], w: &mut Warnings) {
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

fn server_reason(kw: &str) -> &'static str {
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

/// One warning for each directive of the sections that shaped the import (the backend, its
/// frontend, their `defaults`, `global`) that has no counterpart.
fn scan_unmapped(secs: &[Section], pick: &Pick, w: &mut Warnings) {
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
fn proxy_reason(
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

// ---------------------------------------------------------------------------------------------
// Writing the TOML.

/// The file without and with its `[auth]` section (kept apart for validation).
fn render(out: &Out) -> (String, String) {
    let mut t = String::new();
    let line = |t: &mut String, key: &str, value: String, note: &str| {
        let _ = writeln!(t, "{key} = {value}  # {}", comment(note));
    };
    let _ = writeln!(t, "# Source: {}.", comment(&out.origin));
    t.push_str(
        "# Review the warnings printed with this file, then validate it:\n\
         #   redis-master-proxy check --config FILE\n\n",
    );
    if let Some((a, note)) = &out.listen {
        line(&mut t, "listen", toml_str(&a.to_string()), note);
    }
    if let Some((a, note)) = &out.admin {
        line(&mut t, "admin", toml_str(&a.to_string()), note);
    }
    t.push_str("# The servers of the HAProxy backend; names are resolved again at every check.\n");
    t.push_str("backends = [\n");
    for (hp, name) in &out.backends {
        let _ = writeln!(
            t,
            "  {},  # server {}",
            toml_str(&hp.to_string()),
            comment(name)
        );
    }
    t.push_str("]\n");
    if let Some((n, note)) = &out.max_connections {
        line(&mut t, "max_connections", n.to_string(), note);
    }
    if let Some((d, note)) = &out.connect_timeout {
        line(&mut t, "connect_timeout", toml_str(&d.to_string()), note);
    }
    t.push_str(
        "\n[health]\n\
         # Replaces HAProxy's checks: each backend gets AUTH (when [auth] is set) and INFO\n\
         # replication, and clients go to the one master.\n",
    );
    if let Some((d, note)) = &out.interval {
        line(&mut t, "interval", toml_str(&d.to_string()), note);
    }
    if let Some((d, note)) = &out.timeout {
        line(&mut t, "timeout", toml_str(&d.to_string()), note);
    }
    if let Some((n, note)) = &out.rise {
        line(&mut t, "rise", n.to_string(), note);
    }
    if let Some((n, note)) = &out.fall {
        line(&mut t, "fall", n.to_string(), note);
    }

    if let Some(sn) = &out.sentinel {
        let _ = writeln!(
            t,
            "\n[sentinel]\n# From {}.\n\
             # The sentinel listener relays Sentinel clients to a sentinel that answers PING;\n\
             # the sentinels' failover events also reach the election.",
            comment(&sn.origin)
        );
        t.push_str("addresses = [\n");
        for (hp, name) in &sn.addresses {
            let _ = writeln!(
                t,
                "  {},  # server {}",
                toml_str(&hp.to_string()),
                comment(name)
            );
        }
        t.push_str("]\n");
        line(
            &mut t,
            "master_name",
            toml_str(SENTINEL_MASTER_NAME),
            "Sentinel's default name: set the name your sentinels monitor",
        );
        if let Some((a, note)) = &sn.listen {
            line(&mut t, "listen", toml_str(&a.to_string()), note);
        }
        line(
            &mut t,
            "check_interval",
            toml_str(&sn.interval.0.to_string()),
            &sn.interval.1,
        );
        line(
            &mut t,
            "check_timeout",
            toml_str(&sn.timeout.0.to_string()),
            &sn.timeout.1,
        );
    }

    let mut a = String::new();
    if let Some(auth) = &out.auth {
        a.push_str(
            "\n[auth]\n\
             # The checks' password is read from this environment variable at start; it is never\n\
             # written in this file.\n",
        );
        if let Some(u) = &auth.username {
            line(
                &mut a,
                "username",
                toml_str(u),
                "the user of the checks' AUTH",
            );
        }
        let _ = writeln!(a, "password_env = {}", toml_str(PASSWORD_ENV));
    }
    (t, a)
}

/// Runs the proxy's own validation on the result. Whether [`PASSWORD_ENV`] is set depends on
/// where the proxy will run, not on this file, so an unset variable is the one error let
/// through; everything else is validated without the `[auth]` section first.
fn validate(body: &str, full: &str) -> Result<(), ImportError> {
    let o = Overrides::default();
    Config::parse(body, "imported", &o).map_err(ImportError::Invalid)?;
    match Config::parse(full, "imported", &o) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid { key, message, .. })
            if key == "auth.password_env" && message.contains(PASSWORD_ENV) =>
        {
            Ok(())
        }
        Err(e) => Err(ImportError::Invalid(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
