//! Secrets: password hashing (`password`) and session tokens with their cache (`session`).
//! Nothing here knows about HTTP; `api/auth.rs` reads tokens from headers and cookies.

pub mod password;
pub mod session;
