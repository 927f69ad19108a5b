//! Shared test support.

pub mod synthetic;
