//! `confab`: parse the configuration, start logging, run the server until SIGINT or SIGTERM.

use clap::Parser;
use confab_server::App;
use confab_server::config::{Cli, Command, Config, KeysCommand, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Keys(KeysCommand::Generate)) => {
            println!("{}", confab_server::security::crypto::generate_key());
            return Ok(());
        }
        Some(Command::Keys(KeysCommand::Rotate(args))) => return rotate(*args).await,
        None => cli.serve,
    };
    let config = Config::from_args(args)?;
    let filter = EnvFilter::try_from_env("CONFAB_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let app = App::build(config).await?;
    app.run(shutdown_signal()).await
}

/// `confab keys rotate`: re-encrypts stored content under the current key.
async fn rotate(args: confab_server::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let keys = config.keyring.clone().ok_or_else(|| {
        anyhow::anyhow!("set CONFAB_ENCRYPTION_KEY (or --encryption-key-file) to the new key")
    })?;
    let url = &config.database_url;
    let done = if confab_server::store::postgres::is_postgres_url(url) {
        confab_server::store::postgres::rotate_keys(url, keys.clone()).await?
    } else {
        confab_server::store::sqlite::rotate_keys(url, keys.clone()).await?
    };
    println!(
        "re-encrypted {} messages and {} events under key {}",
        done.messages,
        done.events,
        keys.current_id()
    );
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = ?e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = ?e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
