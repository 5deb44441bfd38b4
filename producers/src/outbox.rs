//! The transactional outbox relay (being built).
