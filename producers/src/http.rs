//! The HTTP ingest API (being built).
