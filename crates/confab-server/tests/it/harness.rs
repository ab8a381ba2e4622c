//! The test harness: a real Confab server per test (127.0.0.1 port 0, a temporary data folder),
//! signed-in users, and small helpers shared by the feature files.
//!
//! `TestServer::spawn` builds the real `App`, runs it on a tokio task and stops it gracefully on
//! `restart` or drop. Logs stay quiet unless `TEST_LOG=1` (the level then comes from
//! `RUST_LOG`, default `info`).
//!
//! The backend is SQLite unless `CONFAB_TEST_DATABASE=postgres`: then every server gets a
//! database of its own on the PostgreSQL at `CONFAB_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and a key prefix of its own on the Redis at
//! `CONFAB_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`), both removed afterwards. A
//! missing PostgreSQL or Redis fails the test.

use std::ops::{Deref, DerefMut};
use std::sync::Once;
use std::time::Duration;

use confab_client::reqwest::Response;
use confab_client::{
    Client, ClientError, Conversation, ErrorBody, Message, MessageQuery, Role, User,
};
use confab_server::{App, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";

/// A hang guard for a graceful shutdown, not a speed assertion.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

type Configure = Box<dyn Fn(&mut Config) + Send + Sync>;

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CONFAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis tests use, each under its own prefix.
pub fn redis_url() -> String {
    std::env::var("CONFAB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// Whether this run puts every test server on PostgreSQL and Redis.
pub fn on_postgres() -> bool {
    std::env::var("CONFAB_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A PostgreSQL database and a Redis key prefix of one test's own, removed on drop.
pub struct TestDatabase {
    pub name: String,
    /// `postgres://…/<name>`.
    pub url: String,
    /// Redis keys and channels under `<prefix>:`.
    pub redis_prefix: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let name = format!("confab_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL must answer at {admin} (CONFAB_TEST_POSTGRES_URL): {e}")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database name");
        let url = format!("{base}/{name}");
        let redis_prefix = format!("confab-test-{}", uuid::Uuid::new_v4().simple());
        let client = redis::Client::open(redis_url()).expect("a Redis URL");
        let mut redis = client.get_connection().unwrap_or_else(|e| {
            panic!("Redis must answer at {} (CONFAB_TEST_REDIS_URL): {e}", redis_url())
        });
        let _: String = redis::cmd("PING").query(&mut redis).expect("Redis answers PING");
        TestDatabase { name, url, redis_prefix }
    }
}

impl TestDatabase {
    /// Every file PostgreSQL keeps for this database (tables, indexes, TOAST), as raw bytes,
    /// after a checkpoint has written everything out.
    pub async fn raw_bytes(&self) -> Vec<u8> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("connect");
        sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await.expect("CHECKPOINT (superuser)");
        let data: String = sqlx::query_scalar("SHOW data_directory")
            .fetch_one(&mut conn)
            .await
            .expect("data_directory (superuser)");
        let oid: sqlx::postgres::types::Oid =
            sqlx::query_scalar("SELECT oid FROM pg_database WHERE datname = $1")
                .bind(&self.name)
                .fetch_one(&mut conn)
                .await
                .expect("the database's oid");
        let dir = std::path::Path::new(&data).join("base").join(oid.0.to_string());
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read PostgreSQL's files in {}: {e}", dir.display()))
        {
            let path = entry.expect("a directory entry").path();
            bytes.extend(std::fs::read(&path).expect("a PostgreSQL data file"));
        }
        bytes
    }
}

impl TestDatabase {
    /// Terminates every connection to this database (as a restart would); answers how many.
    pub async fn terminate_connections(&self) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("connect");
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .expect("terminate the connections")
    }

    /// How `table` is partitioned: strategy, key column, number of partitions and the rows
    /// stored in them.
    pub async fn partitioning_of(&self, table: &str) -> (String, String, i64, i64) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("connect");
        let (strategy, key): (String, String) = sqlx::query_as(
            "SELECT CASE p.partstrat WHEN 'h' THEN 'hash' WHEN 'l' THEN 'list' ELSE 'range' END,
                    a.attname::text
               FROM pg_partitioned_table p
               JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
              WHERE p.partrelid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("a partitioned table");
        let partitions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_inherits WHERE inhparent = $1::regclass")
                .bind(table)
                .fetch_one(&mut conn)
                .await
                .expect("partitions");
        let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE tableoid <> '{table}'::regclass"
        )))
        .fetch_one(&mut conn)
        .await
        .expect("rows in partitions");
        let _ = conn.close().await;
        (strategy, key, partitions, stored)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, prefix) = (self.name.clone(), self.redis_prefix.clone());
        // Drop cannot await; a thread with its own runtime removes the database (closing the
        // connections of a server still shutting down) and the Redis keys.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
                        let _ = conn.close().await;
                    }
                });
            }
            if let Ok(client) = redis::Client::open(redis_url())
                && let Ok(mut conn) = client.get_connection()
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        });
        let _ = cleanup.join();
    }
}

/// One running server and the folder holding its data.
pub struct TestServer {
    running: Option<Running>,
    base_url: String,
    /// Re-applied on `restart`, so the restarted server has the same limits.
    configure: Configure,
    /// On PostgreSQL runs: the server's database and Redis prefix.
    database: Option<TestDatabase>,
    /// Declared last: fields drop in order, so the server is told to stop before its folder
    /// is removed.
    dir: TempDir,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn spawn() -> TestServer {
        TestServer::spawn_with(|_| {}).await
    }

    /// A server whose config `configure` adjusts (e.g. `|c| c.max_message_bytes = 10`).
    pub async fn spawn_with(configure: impl Fn(&mut Config) + Send + Sync + 'static) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("a temporary data folder");
        let database = if on_postgres() { Some(TestDatabase::create().await) } else { None };
        let configure: Configure = Box::new(configure);
        let (running, base_url) = start(&dir, database.as_ref(), &configure).await;
        TestServer { running: Some(running), base_url, configure, database, dir }
    }

    /// `http://127.0.0.1:<port>` of the server as it runs now (a restart changes the port).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A fresh, unauthenticated client.
    pub fn client(&self) -> Client {
        Client::new(self.base_url())
    }

    /// Registers `name` with [`PASSWORD`]; the client is signed in as that user.
    pub async fn user(&self, name: &str) -> TestUser {
        let mut client = self.client();
        let auth = client
            .register(name, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("registering {name} failed: {e}"));
        TestUser { client, user: auth.user }
    }

    /// Registers each of `names`, in order.
    pub async fn users<const N: usize>(&self, names: [&str; N]) -> [TestUser; N] {
        let mut users = Vec::with_capacity(N);
        for name in names {
            users.push(self.user(name).await);
        }
        users.try_into().unwrap_or_else(|_| unreachable!("one user per name"))
    }

    /// `user` with a client for the server as it runs now, sending the same token. Needed
    /// after `restart`, which moves the server to a new port.
    pub fn reconnect(&self, user: &TestUser) -> TestUser {
        let token = user.token().expect("a test user is signed in");
        TestUser { client: self.client().with_token(token), user: user.user.clone() }
    }

    /// Stops the server gracefully (signal, then wait for `run` to return) and starts a new
    /// one on the same data folder and config. Clients must be `reconnect`ed: the port
    /// changes.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (running, base_url) = start(&self.dir, self.database.as_ref(), &self.configure).await;
        self.running = Some(running);
        self.base_url = base_url;
    }

    /// Restarts with a different configuration (kept for later restarts).
    pub async fn restart_with(&mut self, configure: impl Fn(&mut Config) + Send + Sync + 'static) {
        self.configure = Box::new(configure);
        self.restart().await;
    }

    /// Stops the server gracefully and waits until it has closed its database.
    pub async fn stop(&mut self) {
        if let Some(Running { shutdown, task }) = self.running.take() {
            // A failed send means `run` has already returned; the join below reports why.
            let _ = shutdown.send(());
            let finished = tokio::time::timeout(SHUTDOWN_TIMEOUT, task)
                .await
                .expect("the server stops within the shutdown timeout")
                .expect("the server task does not panic");
            finished.expect("the server shuts down cleanly");
        }
    }

    /// Signs `name` in again with [`PASSWORD`] (after a restart, or to get a second session).
    pub async fn reconnect_by_login(&self, name: &str) -> TestUser {
        let mut client = self.client();
        let auth = client.login(name, PASSWORD).await.expect("login");
        TestUser { client, user: auth.user }
    }

    /// The server's data folder (the SQLite database lives here).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The PostgreSQL database of this server, on PostgreSQL runs.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    /// The URL of the server's database, SQLite or PostgreSQL.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(database) => database.url.clone(),
            None => format!("sqlite://{}", self.data_dir().join("confab.db").display()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Drop cannot wait: the task finishes on its own (or with the test's runtime).
            let _ = running.shutdown.send(());
        }
    }
}

/// Builds the app on `dir` (binding its listener, opening and migrating the database) and
/// serves it on a task until the returned `Running` says stop.
async fn start(
    dir: &TempDir,
    database: Option<&TestDatabase>,
    configure: &Configure,
) -> (Running, String) {
    let mut config = Config::for_tests(dir.path().to_path_buf());
    if let Some(database) = database {
        config.database_url = database.url.clone();
        config.redis_url = Some(redis_url());
        config.redis_prefix = database.redis_prefix.clone();
    }
    configure(&mut config);
    let app = App::build(config).await.expect("the app builds");
    let base_url = format!("http://{}", app.local_addr());
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        // A dropped sender also means stop.
        let _ = stop.await;
    }));
    (Running { shutdown, task }, base_url)
}

fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            // Fails only if a subscriber is already installed, which is just as good.
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
    });
}

/// A registered, signed-in user: derefs to its [`Client`].
pub struct TestUser {
    pub client: Client,
    pub user: User,
}

impl TestUser {
    pub fn id(&self) -> &str {
        &self.user.id
    }

    pub fn name(&self) -> &str {
        &self.user.username
    }
}

impl Deref for TestUser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for TestUser {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Asserts that `err` is the API error with this status and code.
#[track_caller]
pub fn assert_api_error(err: &ClientError, status: u16, code: &str) {
    assert_eq!((err.status(), err.code()), (Some(status), code), "unexpected error: {err}");
}

/// The status and JSON error body of a raw response; panics (with the body) if the body is
/// not `{"error": {"code", "message"}}`.
pub async fn json_error(response: Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("the error body arrives");
    let body = serde_json::from_str::<ErrorBody>(&text)
        .unwrap_or_else(|e| panic!("status {status}: not a JSON error body ({e}): {text}"));
    (status, body)
}

/// Every message of the conversation in ascending `seq`, paging with `after`.
pub async fn history(client: &Client, conversation_id: &str) -> Vec<Message> {
    let mut all: Vec<Message> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m.seq);
        let query = MessageQuery { limit: Some(100), before: None, after: Some(after) };
        let page = client.list_messages(conversation_id, &query).await.expect("a history page");
        all.extend(page.messages);
        if !page.has_more {
            return all;
        }
    }
}

/// Sends "message 1", "message 2", ... "message n", one after the other.
pub async fn send_numbered(client: &Client, conversation_id: &str, n: usize) -> Vec<Message> {
    let mut sent = Vec::with_capacity(n);
    for i in 1..=n {
        let message = client
            .send_text(conversation_id, &format!("message {i}"))
            .await
            .unwrap_or_else(|e| panic!("sending message {i} failed: {e}"));
        sent.push(message);
    }
    sent
}

/// The `seq`s of `messages`, in their order.
pub fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// The ids of `conversations`, in their order.
pub fn ids(conversations: &[Conversation]) -> Vec<&str> {
    conversations.iter().map(|c| c.id.as_str()).collect()
}

/// The role of `user_id` in `conversation`, or `None` when not a participant.
pub fn role_of(conversation: &Conversation, user_id: &str) -> Option<Role> {
    conversation.participants.iter().find(|p| p.user_id == user_id).map(|p| p.role)
}

/// The user ids of the participants, sorted (their order is not part of the contract).
pub fn member_ids(conversation: &Conversation) -> Vec<String> {
    let mut ids: Vec<String> =
        conversation.participants.iter().map(|p| p.user_id.clone()).collect();
    ids.sort();
    ids
}

/// `ids` as owned, sorted strings, to compare with [`member_ids`].
pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids
}

/// Waits long enough that the next timestamp the server takes differs from the last one
/// (timestamps have millisecond precision). Orders events; asserts nothing about speed.
pub async fn next_timestamp() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// What the database keeps on disk, as raw bytes: every file of the SQLite database (main
/// file, WAL, shared memory), or on PostgreSQL the files of the test's database.
pub async fn database_bytes(server: &TestServer) -> Vec<u8> {
    if let Some(database) = server.database() {
        return database.raw_bytes().await;
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("confab.db") {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    bytes
}

/// Whether `needle` occurs in `haystack` byte for byte.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
