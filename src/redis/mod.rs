//! What the proxy itself says to Redis and Sentinel servers (the checks, the sentinel
//! queries and subscriptions); client traffic is never parsed here.
//!
//! - [`resp`]: sans-IO encoding of commands and RESP framing, with its bounds.
//! - [`info`]: sans-IO parsing of `INFO replication`.
//! - [`client`]: the small client the checks and the sentinel code share: resolve, connect,
//!   `AUTH`, one command, one bounded reply; its one error type, [`client::CheckError`].

pub mod client;
pub mod info;
pub mod resp;
