//! redis-master-proxy: the one endpoint through which applications reach the writable Redis
//! master.
//!
//! # Architecture
//! The **control plane** decides where clients go; the **data path** moves their bytes. They
//! meet in one small shared type, the current [`routing::Route`], held in an `ArcSwap`.
//! Each folder is one layer, and imports only run down this order: [`app`] → [`admin`],
//! [`tools`] → [`control`], [`data`] (neither imports the other) → [`routing`], [`status`] →
//! [`redis`] → [`config`], [`metrics`].
//!
//! Control plane, [`control`] (one task, plus its checks, on the main thread):
//! - [`control::machine`]: the decisions, as one pure state machine (its numbered rules are
//!   [`control`]'s doc); [`control::shell`]: the loop that feeds it check results, sentinel
//!   answers and events and applies what it decides.
//! - [`control::health`]: one check of one backend (resolve, connect, AUTH, INFO, bounded by a
//!   timeout).
//! - [`control::sentinel`]: optional second source: failover events and the sentinels' answers.
//! - [`control::sentinel_route`]: the sentinel listener's route: PING each sentinel, relay its
//!   clients to one that answers (HAProxy's second frontend, on 26379).
//!
//! Data path, [`data`] (one task per client session):
//! - [`data::listener`]: bounded accept loop; binds each client to the current route; connects.
//! - [`data::workers`]: the threads sessions run on, one single-threaded runtime each; the
//!   accept loop hands each client to the one its host's sessions run on, else the least-loaded.
//! - [`data::relay`]: both directions until close or drain; copy or splice per direction.
//! - [`data::splice`]: the only `unsafe`: `splice(2)` through a pipe, Linux only.
//! - [`data::mux`]: `mode = "multiplex"`: commands without connection state share a few backend
//!   connections per worker; a client that uses connection state is pinned to the relay.
//!
//! What the proxy says to Redis itself, [`redis`] (used by the control plane):
//! - [`redis::resp`]: sans-IO encoding of commands and RESP framing, with its bounds.
//! - [`redis::info`]: sans-IO parsing of `INFO replication`.
//! - [`redis::client`]: the small client the checks and the sentinel code share (resolve,
//!   connect, `AUTH`, one command, one bounded reply), with one error type.
//!
//! Operator interfaces:
//! - [`admin`]: the HTTP listener: `/metrics`, `/livez`, `/readyz`, `/status`.
//! - [`tools`]: commands apart from the running proxy: [`tools::status_cli`] (`status`, reads
//!   `/status` and prints a table) and [`tools::haproxy`] (`import-haproxy`, converts a HAProxy
//!   configuration into this TOML).
//!
//! Shared by the layers above (the lowest layer; [`status`] uses [`redis::info::Role`], nothing
//! else here imports a folder):
//! - [`routing`]: the current route, its epoch and its drain signal.
//! - [`status`]: the `/status` snapshot the control plane publishes and `admin` serves.
//! - [`config`]: the TOML file and flags → a validated [`config::Config`].
//! - [`metrics`]: metric names.
//!
//! [`app`] wires them and runs the shutdown sequence; [`shutdown`] maps signals; [`logging`]
//! reads the log level in Redis's spellings.
//!
//! # Glossary
//! - **client**: an application connection accepted on the listen address.
//! - **backend**: a configured Redis server (`host:port`), a candidate master.
//! - **route**: the backend clients are sent to now, with its resolved address and epoch.
//! - **epoch**: a counter bumped at every publish, so two routes to the same backend differ.
//! - **drain**: what happens to sessions bound to a route that was replaced: they stop
//!   forwarding client bytes at once, deliver replies already on their way, then close.
//! - **suspect**: a backend whose checks time out (it may be slow or hung): not down, not
//!   a candidate either. While the route's master is suspect, the route is **paused**.
//! - **pause**: sessions on the route stay open and move no bytes; new clients wait. A paused
//!   route resumes, or drains at once without the held replies.
//! - **hold**: a master named by a sentinel failover event, kept out of the route for at most 2 s
//!   while the promotion is confirmed.

// `unsafe` lives in one module, `data::splice` (allowed in `data/mod.rs`), and nowhere else.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod admin;
pub mod app;
pub mod config;
pub mod control;
pub mod data;
pub mod logging;
pub mod metrics;
pub mod redis;
pub mod routing;
pub mod shutdown;
pub mod status;
pub mod tools;
