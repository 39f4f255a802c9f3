//! TODO

pub mod watch;
