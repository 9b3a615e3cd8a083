//! redis-master-proxy: the one endpoint through which applications reach the writable Redis
//! master.
//!
//! # Architecture
//! The **control plane** decides where clients go; the **data path** moves their bytes. They
//! meet in one small shared type, the current [`routing::Route`], held in an `ArcSwap`.
//!
//! Control plane (one task, plus its checks, on the main thread):
//! - [`config`]: the TOML file and flags → a validated [`config::Config`].
//! - [`info`]: sans-IO encoding of the check commands and parsing of `INFO replication`.
//! - [`health`]: one check of one backend (resolve, connect, AUTH, INFO, bounded by a timeout).
//! - [`sentinel`]: optional second source: failover events and the sentinels' answers.
//! - [`control`]: the decisions, as one pure state machine ([`control::machine`]; its numbered
//!   rules are the module doc), and the shell that feeds it check results, sentinel answers and
//!   events and applies what it decides ([`control::shell`]); the `/status` snapshot.
//! - [`sentinel_route`]: the sentinel listener's route: PING each sentinel, relay its clients
//!   to one that answers (HAProxy's second frontend, on 26379).
//! - [`admin`], [`metrics`]: `/metrics`, `/livez`, `/readyz`, `/status`; metric names.
//!   [`status_cli`] is the `status` command that reads `/status` and prints a table.
//!
//! Data path (one task per client session):
//! - [`listener`]: bounded accept loop; binds each client to the current route; connects.
//! - [`workers`]: the threads sessions run on, one single-threaded runtime each; the accept
//!   loop hands each client to the least-loaded one.
//! - [`relay`]: both directions until close or drain; copy or splice per direction.
//! - [`splice`]: the only `unsafe`: `splice(2)` through a pipe, Linux only.
//! - [`mux`]: `mode = "multiplex"`: commands without connection state share a few backend
//!   connections per worker; a client that uses connection state is pinned to the relay.
//!
//! [`app`] wires them and runs the shutdown sequence; [`shutdown`] maps signals; [`logging`]
//! reads the log level in Redis's spellings.
//! [`haproxy`] converts a HAProxy configuration into this TOML (`import-haproxy`).
//!
//! # Glossary
//! - **client**: an application connection accepted on the listen address.
//! - **backend**: a configured Redis server (`host:port`), a candidate master.
//! - **route**: the backend clients are sent to now, with its resolved address and epoch.
//! - **epoch**: a counter bumped at every publish, so two routes to the same backend differ.
//! - **drain**: what happens to sessions bound to a route that was replaced: they stop
//!   forwarding client bytes at once, deliver replies already on their way, then close.
//! - **suspect**: a backend whose checks are slow (time out, or answer `-BUSY`): not down, not
//!   a candidate either. While the route's master is suspect, the route is **paused**.
//! - **pause**: sessions on the route stay open and move no bytes; new clients wait. A paused
//!   route resumes, or drains at once without the held replies.
//! - **hold**: a master named by a sentinel failover event, kept out of the route for at most 2 s
//!   while the promotion is confirmed.

// `unsafe` lives in one module, `splice`, and nowhere else.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod admin;
pub mod app;
pub mod config;
pub mod control;
pub mod haproxy;
pub mod health;
pub mod info;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod mux;
pub mod relay;
pub mod routing;
pub mod sentinel;
pub mod sentinel_route;
pub mod shutdown;
#[allow(unsafe_code)]
pub mod splice;
pub mod status_cli;
pub mod workers;
