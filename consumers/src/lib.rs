//! The agent runtime (being written).
