//! Usage extraction (stub).
