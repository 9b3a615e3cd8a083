//! What the proxy itself says to Redis and Sentinel servers (the checks, the sentinel
//! queries and subscriptions); client traffic is never parsed here.
//!
//! - [`info`]: sans-IO encoding of the check commands, RESP framing with its bounds, and the
//!   parsing of `INFO replication`.

pub mod info;
