#![doc = include_str!("rules.md")]

pub mod machine;
pub mod shell;
pub mod status;

pub use shell::Control;
pub use status::Status;
