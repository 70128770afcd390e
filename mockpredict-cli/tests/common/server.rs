//! Placeholder until the server binary exists.
