//! The data path: one task per client session, from accept to close.
//!
//! - [`listener`]: bounded accept loop; binds each client to the current route; connects.
//! - [`workers`]: the threads sessions run on, one single-threaded runtime each; the accept
//!   loop hands each client to the one its host's sessions run on, else the least-loaded.
//! - [`relay`]: both directions until close or drain; copy or splice per direction.
//! - [`splice`]: the only `unsafe`: `splice(2)` through a pipe, Linux only.
//! - [`mux`]: `mode = "multiplex"`: commands without connection state share a few backend
//!   connections per worker; a client that uses connection state is pinned to the relay.
//!
//! The data path reads the current [`Route`](crate::routing::Route) once per connection and
//! never does health-check or Sentinel I/O.

pub mod listener;
pub mod mux;
pub mod relay;
#[allow(unsafe_code)]
pub mod splice;
pub mod workers;
