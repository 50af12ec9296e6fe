//! Policies: the circuit breakers a security council writes.
//!
//! - [`model`]: the compiled, typed policy (conditions, units, modes);
//! - [`compile`]: policy files -> model, once at load, every error located;
//! - [`eval`]: the engine that turns samples into trips with evidence.
//!
//! The policy stage is pure: it reads no chain and sends nothing.

pub mod compile;
pub mod eval;
pub mod model;
pub mod warmup;

pub use compile::{compile_str, load_policies};
pub use eval::Engine;
pub use model::{Mode, PolicySet, Severity};
