#![doc = include_str!("rules.md")]

pub mod health;
pub mod machine;
pub mod sentinel;
pub mod sentinel_route;
pub mod shell;

pub use shell::Control;
