//! The log filter: `--log-level` and `RUST_LOG`, in the spellings operators use.
//!
//! Redis operators write `loglevel warning` and `loglevel notice`; tracing's own filter would
//! read an unknown word such as `warning` as the name of a log *target* and silently show
//! nothing, so a proxy set to "warning" ran without any log at all. Here every level word is
//! checked and mapped to a tracing level, and an unknown one is refused before the proxy starts.
//!
//! | written | tracing level |
//! |---|---|
//! | `error` | error |
//! | `warning`, `warn` | warn |
//! | `notice`, `info` | info |
//! | `verbose`, `debug` | debug |
//! | `trace` | trace |
//! | `off`, `nothing` | off |
//!
//! `RUST_LOG` keeps tracing's per-target form (`redis_master_proxy=debug,warn`); each level in
//! it is mapped the same way. A bare word must be a level.

/// The level words accepted, for error messages.
pub const LEVELS: &str = "error, warning (warn), notice (info), verbose (debug), trace, off";

/// Maps one level word to tracing's spelling; `None` when it is not a level.
pub fn level(word: &str) -> Option<&'static str> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "error" => "error",
        "warning" | "warn" => "warn",
        "notice" | "info" => "info",
        "verbose" | "debug" => "debug",
        "trace" => "trace",
        "off" | "nothing" => "off",
        _ => return None,
    })
}

/// Translates a filter (`warning`, or `target=level,level`) into tracing's directive syntax,
/// refusing any level word it does not know.
pub fn directives(spec: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.rsplit_once('=') {
            Some((target, lvl)) => {
                let l = level(lvl).ok_or_else(|| unknown(lvl))?;
                out.push(format!("{target}={l}"));
            }
            None => out.push(level(part).ok_or_else(|| unknown(part))?.to_string()),
        }
    }
    if out.is_empty() {
        return Err(format!("no log level given (use one of {LEVELS})"));
    }
    Ok(out.join(","))
}

fn unknown(word: &str) -> String {
    format!("`{word}` is not a log level (use one of {LEVELS})")
}

/// The filter for `run`: `RUST_LOG` when set and not empty, else `--log-level`. The error
/// names which of the two was wrong.
pub fn filter(flag: &str, env: Option<&str>) -> Result<tracing_subscriber::EnvFilter, String> {
    let (source, spec) = match env.filter(|e| !e.trim().is_empty()) {
        Some(e) => ("RUST_LOG", e),
        None => ("--log-level", flag),
    };
    let d = directives(spec).map_err(|e| format!("{source}: {e}"))?;
    tracing_subscriber::EnvFilter::builder()
        .parse(&d)
        .map_err(|e| format!("{source}: `{spec}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_and_tracing_spellings_map_to_levels() {
        let cases = [
            ("warning", "warn"),
            ("WARN", "warn"),
            ("notice", "info"),
            ("info", "info"),
            ("verbose", "debug"),
            ("debug", "debug"),
            ("error", "error"),
            ("trace", "trace"),
            ("off", "off"),
            ("nothing", "off"),
            (
                "redis_master_proxy=verbose,warning",
                "redis_master_proxy=debug,warn",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(directives(spec).as_deref(), Ok(want), "{spec}");
        }
    }

    #[test]
    fn unknown_levels_are_refused() {
        for bad in [
            "loud",
            "warnings",
            "x=loud",
            "",
            " , ",
            "redis_master_proxy",
        ] {
            let e = directives(bad).expect_err(bad);
            assert!(e.contains("warning"), "{bad}: {e}");
        }
        let e = filter("info", Some("chatty")).unwrap_err();
        assert!(e.starts_with("RUST_LOG"), "{e}");
        let e = filter("chatty", None).unwrap_err();
        assert!(e.starts_with("--log-level"), "{e}");
        assert!(filter("warning", Some("")).is_ok());
    }
}
