//! Model prices (stub).
