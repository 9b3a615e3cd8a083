//! The `status` command: fetch `/status` from a running proxy's admin listener and print it as
//! a table for humans (or the JSON as it is).

use std::time::Duration;

/// `GET /status` from a running proxy (for the `status` command); returns the JSON body.
pub fn fetch_status(admin: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(admin)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.take(16 * 1024 * 1024)
        .read_to_end(&mut resp)
        .map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

/// Renders the `/status` JSON as a table for humans.
pub fn status_table(json: &str) -> Result<String, String> {
    use std::fmt::Write;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v.get("master").filter(|m| !m.is_null()) {
        Some(m) => {
            let since = m["since_unix"].as_u64().unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "master: {} ({})  epoch {}  for {}s{}",
                s(&m["backend"]),
                s(&m["address"]),
                s(&m["epoch"]),
                now.saturating_sub(since),
                if m["paused"].as_bool() == Some(true) {
                    "  PAUSED (master suspect or held: sessions wait)"
                } else {
                    ""
                }
            );
        }
        None => out.push_str("master: NONE (clients wait, then are refused)\n"),
    }
    let _ = writeln!(
        out,
        "client connections: {}   split brain: {}   check rounds: {}",
        s(&v["client_connections"]),
        s(&v["split_brain"]),
        s(&v["check_rounds"])
    );
    if let Some(sn) = v.get("sentinel").filter(|x| !x.is_null()) {
        let _ = writeln!(
            out,
            "sentinels: {}/{} reachable, they name {} ({}){}{}",
            s(&sn["reachable"]),
            s(&sn["configured"]),
            s(&sn["master"]),
            s(&sn["backend"]),
            if sn["disagrees"].as_bool() == Some(true) {
                "  DISAGREE with INFO"
            } else {
                ""
            },
            sn["hold"]
                .as_str()
                .map(|h| format!("  holding old master {h}"))
                .unwrap_or_default()
        );
    }
    let d = &v["decisions"];
    for (key, what) in [
        ("split_brain_masters", "split brain between"),
        (
            "uncorroborated_promotions",
            "promotion not followed (uncorroborated)",
        ),
        ("superseded_histories", "history excluded"),
    ] {
        for item in d[key].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{what}: {}", s(item));
        }
    }
    if let Some(k) = d["kept_sessions"].as_str() {
        let _ = writeln!(out, "sessions kept, new clients wait: {k}");
    }
    if let Some(sn) = v.get("sentinel").filter(|x| !x.is_null()) {
        for item in sn["distrusted"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "sentinel distrusted: {}", s(item));
        }
    }
    if let Some(l) = v.get("sentinel_listener").filter(|x| !x.is_null()) {
        let sentinels = l["sentinels"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let up = sentinels
            .iter()
            .filter(|x| x["up"].as_bool() == Some(true))
            .count();
        let _ = writeln!(
            out,
            "sentinel listener {}: relaying to {} ({up}/{} sentinels answer PING), {} client connections",
            s(&l["listen"]),
            s(&l["current"]),
            sentinels.len(),
            s(&l["client_connections"])
        );
    }
    for l in v["sentinel_links"].as_array().into_iter().flatten() {
        let detail = match l["state"].as_str() {
            Some("subscribed") | None => continue,
            Some("connecting") => "connecting".to_string(),
            Some("unreachable") => format!("unreachable: {}", s(&l["error"])),
            Some("not_a_sentinel") => format!(
                "NOT A SENTINEL (answers {}): check sentinel.addresses",
                s(&l["reply"])
            ),
            Some("unknown_master") => format!(
                "does not monitor {}: check sentinel.master_name",
                s(&l["master_name"])
            ),
            Some(other) => other.to_string(),
        };
        let _ = writeln!(out, "  sentinel {}: {detail}", s(&l["sentinel"]));
    }
    let _ = writeln!(
        out,
        "\n{:<44} {:<22} {:<5} {:<8} {:>12} {:>10} {:>9}  ERROR",
        "BACKEND", "ADDRESS", "UP", "ROLE", "OFFSET", "LAG", "CHECK ms"
    );
    for b in v["backends"].as_array().into_iter().flatten() {
        let ms = b["last_check_ms"]
            .as_f64()
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<44} {:<22} {:<5} {:<8} {:>12} {:>10} {:>9}  {}",
            s(&b["backend"]),
            s(&b["address"]),
            match (b["up"].as_bool(), b["suspect"].as_bool()) {
                (Some(true), Some(true)) => "SLOW",
                (Some(true), _) => "up",
                _ => "DOWN",
            },
            s(&b["role"]),
            s(&b["repl_offset"]),
            s(&b["lag_bytes"]),
            ms,
            s(&b["error"])
        );
    }
    Ok(out)
}
