//! Which commands may share a backend connection, and which pin their client to its own.
//!
//! Decided from Redis's command table ([`super::commands`], generated from `COMMAND INFO`), by
//! one rule: a command **pins** when Redis files it under an ACL category about the connection
//! or about order across commands — `@connection`, `@transaction`, `@blocking`, `@pubsub`,
//! `@scripting`, `@admin` — or flags it `blocking`, `pubsub`, `no_multi`, `admin` or
//! `noscript` (what Redis itself will not run inside a script is what touches the caller's
//! connection: `AUTH`, `HELLO`, `CLIENT`, `WAIT`, `MULTI`, `SUBSCRIBE`, `MONITOR`, …).
//! Everything else shares. A command the table does not know, a container (`CLIENT`, `CONFIG`,
//! …) without a subcommand it knows, or a request the parser does not frame, pins.
//!
//! Pinning is a superset, never a guess: a pinned client gets its own backend connection, so it
//! sees exactly what it would see directly. The rule pins some commands that would be safe to
//! share: scripts (`EVAL`, `FCALL`) can neither call `CLIENT` nor block, but a long one would
//! hold every client behind its shared connection, so they keep their own. [`STATELESS`] lists
//! the few commands the rule would pin that carry no connection state, each with the reason;
//! [`NEWER_STATELESS`] the same for commands newer than the table.
//!
//! # `HELLO`
//! Shared connections come in both protocols, so a `HELLO` that only picks one shares
//! ([`Class::Hello`]): `HELLO`, `HELLO 2` and `HELLO 3`, spelled exactly so. Any other `HELLO`
//! pins: with `AUTH` or `SETNAME` (a user or a name is connection state), or with a version Redis
//! refuses (it answers `-NOPROTO` on the client's own connection, as directly).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::commands::COMMANDS;

/// ACL categories whose commands pin.
pub const PIN_CATEGORIES: &[&str] = &[
    "@connection",
    "@transaction",
    "@blocking",
    "@pubsub",
    "@scripting",
    "@admin",
];

/// Command flags that pin.
pub const PIN_FLAGS: &[&str] = &["blocking", "pubsub", "no_multi", "admin", "noscript"];

/// Commands the rule would pin that share, and why they can.
pub const STATELESS: &[(&str, &str)] = &[
    (
        "ping",
        "answers PONG or its argument; only pinned clients are ever subscribed",
    ),
    ("echo", "answers its argument"),
    (
        "publish",
        "a write to a channel; its count of receivers is the server's",
    ),
    ("spublish", "a write to a shard channel, as PUBLISH"),
    ("pubsub|channels", "reads the server's channels"),
    ("pubsub|numpat", "reads the server's patterns"),
    ("pubsub|numsub", "reads the server's subscriber counts"),
    ("pubsub|shardchannels", "reads the server's shard channels"),
    (
        "pubsub|shardnumsub",
        "reads the server's shard subscriber counts",
    ),
    ("command", "reads the command table"),
    ("command|count", "reads the command table"),
    ("command|docs", "reads the command table"),
    ("command|getkeys", "reads the command table"),
    ("command|getkeysandflags", "reads the command table"),
    ("command|info", "reads the command table"),
    ("command|list", "reads the command table"),
    (
        "select",
        "shares only as `SELECT 0`: shared connections stay on database 0",
    ),
];

/// Commands newer than the table (Redis 7.2+; Redis 7.0 answers them with an error) that carry
/// no connection state, and why they share. When the table is regenerated from a Redis that has
/// them, they move to [`STATELESS`].
pub const NEWER_STATELESS: &[(&str, &str)] = &[(
    "client|setinfo",
    "names the client library, shown only by CLIENT LIST and CLIENT INFO (which pin and count \
     the shared connections anyway); redis-py sends it on every connection it opens",
)];

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    /// The label of metrics about connections in this protocol.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Resp2 => "2",
            Protocol::Resp3 => "3",
        }
    }
}

/// A command newer than most masters, which sets connection state where the master knows it,
/// and why it may share where it does not: a master that does not know it answers an error and
/// changes nothing. Whether the master knows it is asked once per route and thread
/// (`COMMAND INFO`, with the probe of [`super`]).
pub const IF_UNKNOWN: (&str, &str) = (
    "client|maint_notifications",
    "redis-py 8 sends it on every RESP3 connection it opens (and ignores the error); where \
     the master knows it, it turns on push messages for the connection, so it pins",
);

/// What a command needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// May go to a shared connection.
    Share,
    /// Pins its client to a connection of its own from here on.
    Pin,
    /// `HELLO` with no option but a protocol: shares, on connections of that protocol from here
    /// on (`None`: `HELLO` alone, which keeps the client's).
    Hello(Option<Protocol>),
    /// [`IF_UNKNOWN`]: shares when the master does not know it, pins when it does.
    IfUnknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Share,
    Pin,
    /// Has subcommands: the class is the subcommand's.
    Container,
    /// `SELECT`: shares with the argument `0` only.
    SelectZero,
    /// [`IF_UNKNOWN`].
    IfUnknown,
}

fn pins(flags: &[&str], categories: &[&str]) -> bool {
    flags.iter().any(|f| PIN_FLAGS.contains(f))
        || categories.iter().any(|c| PIN_CATEGORIES.contains(c))
}

static TABLE: LazyLock<HashMap<&'static str, Entry>> = LazyLock::new(|| {
    let mut t = HashMap::with_capacity(COMMANDS.len());
    for &(name, flags, categories) in COMMANDS {
        let entry = if pins(flags, categories) {
            Entry::Pin
        } else {
            Entry::Share
        };
        t.insert(name, entry);
        if let Some((parent, _)) = name.split_once('|') {
            if let Some(&(p, _, _)) = COMMANDS.iter().find(|c| c.0 == parent) {
                t.insert(p, Entry::Container);
            }
        }
    }
    for &(name, _) in STATELESS {
        if let Some(e) = t.get_mut(name) {
            *e = if name == "select" {
                Entry::SelectZero
            } else {
                Entry::Share
            };
        }
    }
    for &(name, _) in NEWER_STATELESS {
        t.entry(name).or_insert(Entry::Share);
    }
    t.insert(IF_UNKNOWN.0, Entry::IfUnknown);
    t
});

/// Longest command or subcommand name looked up (longer ones are unknown: they pin).
const MAX_NAME: usize = 32;

fn lookup(name: &[u8]) -> Option<Entry> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut lower = [0u8; MAX_NAME];
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let key = std::str::from_utf8(&lower[..name.len()]).ok()?;
    TABLE.get(key).copied()
}

/// The class of a command with `argc` words, named `name`, first argument `arg1`.
pub fn classify(name: &[u8], argc: usize, arg1: Option<&[u8]>) -> Class {
    if name.eq_ignore_ascii_case(b"hello") {
        return match (argc, arg1) {
            (1, _) => Class::Hello(None),
            (2, Some(b"2")) => Class::Hello(Some(Protocol::Resp2)),
            (2, Some(b"3")) => Class::Hello(Some(Protocol::Resp3)),
            _ => Class::Pin,
        };
    }
    match lookup(name) {
        Some(Entry::Share) => Class::Share,
        Some(Entry::SelectZero) if argc == 2 && arg1 == Some(b"0") => Class::Share,
        Some(Entry::Container) => {
            let Some(sub) = arg1.filter(|s| name.len() + 1 + s.len() <= MAX_NAME) else {
                return Class::Pin;
            };
            let mut full = [0u8; MAX_NAME];
            full[..name.len()].copy_from_slice(name);
            full[name.len()] = b'|';
            full[name.len() + 1..name.len() + 1 + sub.len()].copy_from_slice(sub);
            match lookup(&full[..name.len() + 1 + sub.len()]) {
                Some(Entry::Share) => Class::Share,
                Some(Entry::IfUnknown) => Class::IfUnknown,
                _ => Class::Pin,
            }
        }
        _ => Class::Pin,
    }
}

/// Every command and subcommand that pins, sorted (for the README and tests).
pub fn pinned() -> Vec<&'static str> {
    let mut v: Vec<&str> = TABLE
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Pin | Entry::SelectZero))
        .map(|(n, _)| *n)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(words: &str) -> Class {
        let w: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        classify(w[0], w.len(), w.get(1).copied())
    }

    #[test]
    fn connection_state_and_ordering_pin() {
        for c in [
            "MULTI",
            "EXEC",
            "DISCARD",
            "WATCH k",
            "UNWATCH",
            "BLPOP l 0",
            "BRPOP l 0",
            "BLMOVE a b LEFT RIGHT 0",
            "BZPOPMIN z 0",
            "XREAD STREAMS s 0",
            "WAIT 1 0",
            "SUBSCRIBE c",
            "PSUBSCRIBE p",
            "SSUBSCRIBE c",
            "UNSUBSCRIBE",
            "MONITOR",
            "CLIENT TRACKING on",
            "CLIENT REPLY off",
            "CLIENT SETNAME x",
            "CLIENT ID",
            "CLIENT KILL ID 1",
            "CLIENT PAUSE 10",
            "CLIENT NO-EVICT on",
            "CLIENT LIST",
            "CLIENT",
            "SELECT 1",
            "SELECT 0 x",
            "SELECT 00",
            "AUTH p",
            "HELLO 3 AUTH u p",
            "HELLO 3 SETNAME x",
            "HELLO 2 AUTH u p",
            "HELLO 4",
            "HELLO 03",
            "HELLO three",
            "EVAL s 0",
            "EVALSHA h 0",
            "FCALL f 0",
            "EVAL_RO s 0",
            "QUIT",
            "RESET",
            "READONLY",
            "ASKING",
            "DEBUG SLEEP 1",
            "SHUTDOWN",
            "CONFIG SET a b",
            "NOSUCHCOMMAND",
            "SYNC",
            "PSYNC ? -1",
            "REPLCONF listening-port 1",
        ] {
            assert_eq!(class(c), Class::Pin, "{c}");
        }
    }

    #[test]
    fn plain_commands_share() {
        for c in [
            "GET k",
            "set k v",
            "Incr k",
            "MSET a 1 b 2",
            "LPUSH l a",
            "LPOP l",
            "HSET h f v",
            "ZADD z 1 m",
            "XADD s * f v",
            "EXPIRE k 1",
            "DEL k",
            "SCAN 0",
            "INFO",
            "DBSIZE",
            "PING",
            "ECHO x",
            "PUBLISH c m",
            "SELECT 0",
            "COMMAND",
            "COMMAND COUNT",
            "CLIENT SETINFO LIB-NAME redis-py",
            "client setinfo lib-ver 8.1.0",
            "OBJECT ENCODING k",
            "XINFO STREAM s",
            "MEMORY USAGE k",
            "FLUSHALL",
            "KEYS *",
        ] {
            assert_eq!(class(c), Class::Share, "{c}");
        }
    }

    #[test]
    fn hello_with_a_protocol_only_shares() {
        assert_eq!(class("HELLO"), Class::Hello(None));
        assert_eq!(class("hello 2"), Class::Hello(Some(Protocol::Resp2)));
        assert_eq!(class("HeLLo 3"), Class::Hello(Some(Protocol::Resp3)));
        assert_eq!(
            class("CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type internal-ip"),
            Class::IfUnknown
        );
    }

    #[test]
    fn every_stateless_exception_is_in_the_table() {
        for (name, _) in STATELESS {
            assert!(TABLE.contains_key(name), "{name}");
        }
        for (name, _) in NEWER_STATELESS {
            assert!(
                !COMMANDS.iter().any(|c| c.0 == *name),
                "{name} is in the table now: move it to STATELESS"
            );
        }
        assert!(pinned().contains(&"client|setname"));
        assert!(!pinned().contains(&"get"));
    }
}
