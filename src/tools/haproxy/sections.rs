//! The file as sections (`global`, `defaults`, `frontend`, `backend`, `listen`, …) of lines, and
//! what each proxy section inherits from its `defaults`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::lexer::{split_words, Line};
use super::values::parse_bind;
use super::warnings::Warnings;
use super::ImportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    Resolvers,
    Other,
}

/// Every section keyword of HAProxy 2.x; a line starting with one of them opens a section.
pub(super) const SECTION_KEYWORDS: &[&str] = &[
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
pub(super) struct Section {
    pub(super) kind: Kind,
    pub(super) keyword: String,
    pub(super) name: String,
    /// The `defaults` section it takes its initial settings from (index into the sections).
    pub(super) defaults: Option<usize>,
    pub(super) lines: Vec<Line>,
}

impl Section {
    /// `backend redis_master`, as written in the file.
    pub(super) fn label(&self) -> String {
        if self.name.is_empty() {
            self.keyword.clone()
        } else {
            format!("{} {}", self.keyword, self.name)
        }
    }

    pub(super) fn has_servers(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.is(&["server"]) || l.is(&["server-template"]))
    }

    pub(super) fn routes_to(&self, backend: &str) -> bool {
        self.lines
            .iter()
            .any(|l| (l.is(&["default_backend"]) || l.is(&["use_backend"])) && l.w(1) == backend)
    }

    /// The TCP addresses of its `bind` lines that parse.
    pub(super) fn binds(&self) -> Vec<SocketAddr> {
        self.lines
            .iter()
            .filter(|l| l.is(&["bind"]))
            .flat_map(|l| l.w(1).split(','))
            .filter_map(|a| parse_bind(a).ok().map(|(addr, _)| addr))
            .collect()
    }
}

/// The file as sections of lines, with each proxy's `defaults` resolved.
pub(super) fn parse(text: &str, w: &mut Warnings) -> Result<Vec<Section>, ImportError> {
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
pub(super) fn chain(secs: &[Section], idx: usize) -> Vec<usize> {
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
pub(super) fn lookup<'a>(
    secs: &'a [Section],
    idx: usize,
    kws: &[&str],
) -> Option<(&'a Line, &'a Section)> {
    chain(secs, idx).into_iter().find_map(|s| {
        secs[s]
            .lines
            .iter()
            .rev()
            .find(|l| l.is(kws))
            .map(|l| (l, &secs[s]))
    })
}

pub(super) fn global(secs: &[Section]) -> impl Iterator<Item = &Line> {
    secs.iter()
        .filter(|s| s.kind == Kind::Global)
        .flat_map(|s| s.lines.iter())
}
