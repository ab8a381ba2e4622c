//! Assembly: `App::build` opens the store, builds the services and the router and binds the
//! listener; `App::run` serves until the shutdown future resolves, then drains in-flight
//! requests and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::service::{Limits, Service};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

pub struct App {
    listener: TcpListener,
    service: Arc<Service>,
    router: axum::Router,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_url(&config.database_url, config.sqlite_sync_full).await?);
        let service = Arc::new(Service::new(store, Limits::from(&config)).await?);
        // JSON escapes can take six bytes per content byte; leave room for the other fields.
        let max_body_bytes = config.max_message_bytes.saturating_mul(6).max(64 * 1024) + 4096;
        let router = api::router(AppState { service: service.clone() }, max_body_bytes);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        Ok(App { listener, service, router })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// and closes the database cleanly.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "confab listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serve");
        self.service.close().await;
        tracing::info!("confab stopped");
        served
    }
}
