//! The agent runtime (being written).

pub mod cases;
pub mod consumer;
pub mod local;
pub mod manifest;
pub mod observe;
pub mod runner;
pub mod runtime;
pub mod store;
pub mod tools;
pub mod validate;
