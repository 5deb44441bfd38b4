//! The WebSocket notifier (being built).
