//! Commands for operators, apart from the running proxy.
//!
//! - [`status_cli`]: the `status` command: reads a proxy's `/status` and prints a table.
//! - [`haproxy`]: `import-haproxy`: converts a HAProxy configuration into this TOML.

pub mod haproxy;
pub mod status_cli;
