//! The Confab server: a self-hostable private messaging server.
//!
//! # Layout
//! - `config`   CLI flags, `CONFAB_*` variables and the TOML file, validated once.
//! - `app`      assembly: store + services + router + listener; graceful shutdown.
//! - `api/`     HTTP handlers, extractors, the JSON error mapping, the OpenAPI document.
//! - `service/` use cases and permissions (the `access_conversation` gate).
//! - `store/`   the `Store` trait and its SQLite implementation with a group-commit writer.
//! - `realtime/` the hub (fan-out), feeds (replay + live), and the WS/SSE/long-poll transports.
//! - `security/` password hashing and session tokens.
//! - `web`      the embedded browser client (`web/`), with its cache and CSP headers.
//!
//! A request flows `api` → `service` → `store`; nothing flows back up but return values.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod realtime;
pub mod security;
pub mod service;
pub mod store;
pub mod time;
pub mod web;

pub use app::App;
pub use config::Config;
