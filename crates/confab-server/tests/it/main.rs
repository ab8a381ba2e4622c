//! Integration tests: one binary (faster to link than one per file). Each test starts its own
//! real server on 127.0.0.1 port 0 with a temporary data folder (`harness.rs`) and drives it
//! over HTTP through the Rust SDK, `confab-client`.
//!
//! One file per feature; `authz.rs` is the authorization rules by hand, `matrix.rs` the
//! authorization matrix generated over every operation of the OpenAPI document, `input.rs` the
//! hostile and malformed input, `durability.rs` concurrency and restarts.

// A failed unwrap is how a test reports an unexpected error, with the error in the message.
#![allow(clippy::unwrap_used)]

mod harness;

mod accounts;
mod authz;
mod cluster;
mod conversations;
mod durability;
mod input;
mod matrix;
mod messages;
mod postgres;
mod process;
mod realtime;
mod replay;
mod security;
