//! Secrets and abuse control: password hashing (`password`), session and CSRF tokens with the
//! session cache (`session`), rate limits and login back-off (`rate`), and encryption of message
//! content at rest (`crypto`).
//! Nothing here knows about HTTP; `api/auth.rs` reads tokens from headers and cookies.

pub mod crypto;
pub mod password;
pub mod rate;
pub mod session;
