//! Writing the TOML, and checking it with the proxy's own validation.

use std::fmt::Write as _;

use super::mapping::Out;
use super::values::{comment, toml_str};
use super::{ImportError, PASSWORD_ENV, SENTINEL_MASTER_NAME};
use crate::config::{Config, ConfigError, Overrides};

/// The file without and with its `[auth]` section (kept apart for validation).
pub(super) fn render(out: &Out) -> (String, String) {
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
pub(super) fn validate(body: &str, full: &str) -> Result<(), ImportError> {
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
