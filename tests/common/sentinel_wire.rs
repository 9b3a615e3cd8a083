//! What the test fakes of Sentinel say, in one place: the replies to the few commands the proxy
//! sends a sentinel, and the failover events. The fakes differ only in how they do I/O (threads
//! in `fake_sentinel`, the test's runtime in `inproc`).

/// A RESP bulk string.
pub fn bulk(s: &str) -> String {
    format!("${}\r\n{}\r\n", s.len(), s)
}

/// `host`, `port` of a `127.0.0.1:PORT` address.
pub fn split(addr: &str) -> (&str, &str) {
    addr.split_once(':').unwrap_or((addr, "0"))
}

/// What a fake sentinel does with one command.
pub enum Answer {
    /// Write this reply and read the next command.
    Reply(String),
    /// Write these subscription confirmations, then send events until the subscriber goes.
    Subscribed(String),
}

/// The answer of a sentinel that monitors `name` at `master` (`127.0.0.1:PORT`) to `cmd`:
/// `PING`, `AUTH`, `SENTINEL get-master-addr-by-name` and `SUBSCRIBE`; an error otherwise.
pub fn answer(cmd: &[String], name: &str, master: &str) -> Answer {
    let upper: Vec<String> = cmd.iter().map(|a| a.to_ascii_uppercase()).collect();
    let reply = match upper.first().map(String::as_str) {
        Some("PING") => "+PONG\r\n".to_string(),
        Some("AUTH") => "+OK\r\n".to_string(),
        Some("SENTINEL") if upper.get(1).map(String::as_str) == Some("GET-MASTER-ADDR-BY-NAME") => {
            if cmd.get(2).map(String::as_str) == Some(name) {
                let (h, p) = split(master);
                format!("*2\r\n{}{}", bulk(h), bulk(p))
            } else {
                "*-1\r\n".to_string()
            }
        }
        Some("SUBSCRIBE") => {
            let mut out = String::new();
            for (i, ch) in cmd[1..].iter().enumerate() {
                out += &format!("*3\r\n{}{}:{}\r\n", bulk("subscribe"), bulk(ch), i + 1);
            }
            return Answer::Subscribed(out);
        }
        _ => "-ERR unknown command\r\n".to_string(),
    };
    Answer::Reply(reply)
}

/// A pub/sub message as a subscriber receives it.
pub fn message(channel: &str, payload: &str) -> String {
    format!(
        "*3\r\n{}{}{}",
        bulk("message"),
        bulk(channel),
        bulk(payload)
    )
}

/// The two events with which Sentinel commits to failing `master` of `name` over to `replica`
/// (`+selected-slave`, `+failover-state-send-slaveof-noone`), with Redis 7's payloads.
pub fn failover_events(name: &str, master: &str, replica: &str) -> [(&'static str, String); 2] {
    let ((mh, mp), (rh, rp)) = (split(master), split(replica));
    let payload = format!("slave {rh}:{rp} {rh} {rp} @ {name} {mh} {mp}");
    [
        ("+selected-slave", payload.clone()),
        ("+failover-state-send-slaveof-noone", payload),
    ]
}
