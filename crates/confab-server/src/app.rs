//! Assembly: `App::build` opens the store, builds the services and the router and binds the
//! listener; `App::run` serves until the shutdown future resolves, then drains in-flight
//! requests and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum_server::accept::NoDelayAcceptor;
use tokio::net::TcpListener;

use crate::api::client::NetPolicy;
use crate::api::{self, AppState};
use crate::bus::Bus;
use crate::config::Config;
use crate::realtime::{Hub, HubConfig};
use crate::service::{Limits, Service};
use crate::store::Store;
use crate::store::postgres::{PgStore, is_postgres_url};
use crate::store::sqlite::SqliteStore;

pub struct App {
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    service: Arc<Service>,
    router: axum::Router,
    draining: Arc<AtomicBool>,
    drain: Duration,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        create_private_dir(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let (hub, presence) = Hub::new(HubConfig {
            queue: config.connection_queue,
            max_connections_per_user: config.max_connections_per_user,
            presence_grace: Duration::from_millis(config.presence_grace_ms),
        });
        let hub = Arc::new(hub);
        let (bus, revocations) =
            Bus::new(hub.clone(), config.redis_url.as_deref(), &config.redis_prefix)?;
        let bus = Arc::new(bus);
        let store: Arc<dyn Store> = if is_postgres_url(&config.database_url) {
            Arc::new(
                PgStore::open(
                    &config.database_url,
                    config.database_max_connections,
                    bus.clone(),
                    config.keyring.clone(),
                )
                .await?,
            )
        } else {
            Arc::new(
                SqliteStore::open_url(
                    &config.database_url,
                    config.sqlite_sync_full,
                    bus.clone(),
                    config.keyring.clone(),
                )
                .await?,
            )
        };
        bus.start(store.clone());
        let service =
            Arc::new(Service::new(store, hub, bus, Limits::from(&config), &config.rates).await?);
        service.prune_events().await.context("prune the event log")?;
        service.prune_sessions().await.context("prune stale sessions")?;
        service.spawn_background(presence, revocations);
        // JSON escapes can take six bytes per content byte; leave room for the other fields.
        let max_body_bytes = config.max_message_bytes.saturating_mul(6).max(64 * 1024) + 4096;
        let draining = Arc::new(AtomicBool::new(false));
        let net = Arc::new(NetPolicy {
            tls: config.tls.is_some(),
            trusted_proxies: config.trusted_proxies.clone(),
        });
        let state = AppState { service: service.clone(), net };
        let refuse = draining.clone();
        let router = api::router(state, max_body_bytes, move |routes| {
            routes.layer(middleware::from_fn_with_state(refuse, refuse_while_draining))
        });
        let tls = match &config.tls {
            Some((cert, key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!("load TLS certificate {} and key {}", cert.display(), key.display())
                    })?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        let drain = Duration::from_millis(config.shutdown_drain_ms);
        Ok(App { listener, tls, service, router, draining, drain })
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.local_addr(), scheme, "confab listening");
        let hub = self.service.hub().clone();
        let (draining, drain) = (self.draining.clone(), self.drain);
        // New requests get a JSON 503 while requests already on their way arrive; then the
        // listener closes and the in-flight requests finish. Streams and sockets never finish by
        // themselves: end them (WebSockets with 1012, "restarting") so clients reconnect
        // elsewhere or after the restart.
        let begin_drain = async move {
            shutdown.await;
            tracing::info!("draining");
            draining.store(true, Ordering::SeqCst);
            hub.shutdown();
            tokio::time::sleep(drain).await;
        };
        let app = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            begin_drain.await;
            stopper.graceful_shutdown(None);
        });
        let listener = self.listener.into_std().context("listener")?;
        let served = match self.tls {
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .context("listener")?
                    .acceptor(NoDelayAcceptor::new())
                    .handle(handle);
                server.http_builder().http1().header_read_timeout(SLOW_CLIENT_TIMEOUT);
                server.first_request_timeout(SLOW_CLIENT_TIMEOUT).serve(app).await.context("serve")
            }
            Some(tls) => {
                let mut server = axum_server::from_tcp_rustls(listener, tls)
                    .context("TLS listener")?
                    .map(|rustls| rustls.acceptor(NoDelayAcceptor::new()))
                    .handle(handle);
                server.http_builder().http1().header_read_timeout(SLOW_CLIENT_TIMEOUT);
                server
                    .first_request_timeout(SLOW_CLIENT_TIMEOUT)
                    .serve(app)
                    .await
                    .context("serve TLS")
            }
        };
        self.service.close().await;
        tracing::info!("confab stopped");
        served
    }
}

/// How long a client may take to send a request's headers (and a new connection its first
/// request) before the connection is closed: a client that sends slowly on purpose
/// (slowloris) would otherwise hold a descriptor for as long as it likes.
const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates the data folder (and its parents) if missing; a folder created here is readable by
/// its owner only, as it holds the database. An existing folder keeps its permissions.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// While shutting down: answer 503 and ask the client to close the connection.
async fn refuse_while_draining(
    State(draining): State<Arc<AtomicBool>>,
    request: Request,
    next: Next,
) -> Response {
    if !draining.load(Ordering::SeqCst) {
        return next.run(request).await;
    }
    let mut response = crate::api::error::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server is restarting; try again",
    );
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_data_folder_created_by_the_server_is_private_and_an_existing_one_is_kept() {
        let root = tempfile::tempdir().expect("temp dir");
        let created = root.path().join("a/data");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");

        super::create_private_dir(&created).expect("created");
        super::create_private_dir(root.path()).expect("existing");

        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&created), 0o700);
        assert_eq!(mode(root.path()), 0o755, "an existing folder keeps its permissions");
    }
}
