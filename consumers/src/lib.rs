//! The agent runtime (being written).

pub mod manifest;
pub mod store;
pub mod tools;
