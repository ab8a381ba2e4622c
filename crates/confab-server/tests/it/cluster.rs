//! Several nodes, one cluster: two `confab` processes share one PostgreSQL database and the
//! real Redis (each test with a database and key prefix of its own, see
//! `harness::TestDatabase`), and clients talk to both. What one
//! node commits reaches sockets on the other exactly once and in order; sessions signed out on
//! one fail on the other; a killed node leaves the other serving.

use std::collections::HashSet;
use std::time::Duration;

use confab_client::{Client, Event};
use tempfile::TempDir;

use crate::harness::{PASSWORD, TestDatabase};
use crate::process::ServerProcess;

/// Redis for the cluster tests. CI provides it; a missing Redis fails the tests loudly.
const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// How long a frame may take to arrive before the test fails (a hang guard, not a speed claim).
const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    a: Option<ServerProcess>,
    b: ServerProcess,
    _database: TestDatabase,
    _dir: TempDir,
}

impl Cluster {
    /// Node A, then node B, on one fresh PostgreSQL database and Redis prefix.
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// The same, each node with `extra` options too.
    async fn start_with(extra: &[&str]) -> Cluster {
        Cluster::start_on(REDIS_URL, extra).await
    }

    /// The same, reaching Redis at `redis_url`.
    async fn start_on(redis_url: &str, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create().await;
        let mut args = vec![
            "--database-url",
            &database.url,
            "--redis-url",
            redis_url,
            "--redis-prefix",
            &database.redis_prefix,
            "--presence-grace-ms",
            "200",
        ];
        args.extend_from_slice(extra);
        let a = ServerProcess::start(dir.path(), &args, &[]).await;
        let b = ServerProcess::start(dir.path(), &args, &[]).await;
        Cluster { a: Some(a), b, _database: database, _dir: dir }
    }

    fn a(&self) -> &ServerProcess {
        self.a.as_ref().expect("node A runs")
    }
}

async fn signed_in(base: &str, name: &str, register: bool) -> Client {
    let mut client = Client::new(base);
    if register {
        client.register(name, PASSWORD).await.expect("register");
    } else {
        client.login(name, PASSWORD).await.expect("login");
    }
    client
}

fn redis_must_answer() {
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let mut conn = client
        .get_connection()
        .unwrap_or_else(|e| panic!("Redis must run on 127.0.0.1:6379 for the cluster tests: {e}"));
    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn messages_sent_through_one_node_reach_a_socket_on_the_other_once_and_in_order() {
    redis_must_answer();
    let cluster = Cluster::start().await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob_on_b = signed_in(&cluster.b.base_url, "bob", true).await;
    let chat = alice.create_direct(&bob_on_b.me().await.unwrap().id).await.unwrap();
    let mut socket = bob_on_b.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();

    for i in 0..100 {
        alice.send_text(&chat.id, &format!("m{i}")).await.unwrap();
    }

    let mut seqs = Vec::new();
    while seqs.len() < 100 {
        let frame = socket.next_frame_within(WAIT).await.unwrap().expect("the socket stays open");
        if let Ok(Event::NewMessage(m)) = frame.event() {
            assert_eq!(m.content, format!("m{}", seqs.len()));
            seqs.push(m.seq);
        }
    }
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "every message once, in order");
    // Nothing more arrives: no duplicates trailing behind.
    assert!(socket.next_frame_within(Duration::from_millis(500)).await.is_err());
}

#[tokio::test]
async fn concurrent_senders_on_both_nodes_keep_seq_gapless_and_everyone_sees_everything() {
    redis_must_answer();
    let cluster = Cluster::start().await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob = signed_in(&cluster.b.base_url, "bob", true).await;
    let carol = signed_in(&cluster.b.base_url, "carol", true).await;
    let ids = [bob.me().await.unwrap().id, carol.me().await.unwrap().id];
    let group = alice.create_group("both nodes", &ids).await.unwrap();
    let mut carol_socket = carol.connect_ws(None).await.unwrap();
    carol_socket.next_of("ready").await.unwrap();

    let send_all = |client: Client, tag: &'static str| {
        let id = group.id.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                client.send_text(&id, &format!("{tag}{i}")).await.unwrap();
            }
        })
    };
    let (x, y) = (send_all(alice, "a"), send_all(bob, "b"));
    x.await.unwrap();
    y.await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 80 {
        let frame = carol_socket.next_frame_within(WAIT).await.unwrap().expect("open");
        if let Ok(Event::NewMessage(m)) = frame.event() {
            seen.push(m.seq);
        }
    }
    assert_eq!(seen, (1..=80).collect::<Vec<_>>(), "gapless, in order, once each");
}

#[tokio::test]
async fn typing_on_one_node_shows_on_the_other() {
    redis_must_answer();
    let cluster = Cluster::start().await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob = signed_in(&cluster.b.base_url, "bob", true).await;
    let chat = alice.create_direct(&bob.me().await.unwrap().id).await.unwrap();
    let mut socket = bob.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();

    alice.set_typing(&chat.id, true).await.unwrap();

    let frame = tokio::time::timeout(WAIT, socket.next_of("typing")).await.unwrap().unwrap();
    let Ok(Event::Typing(t)) = frame.event() else { panic!("a typing frame") };
    assert!(t.typing && t.conversation_id == chat.id);
}

#[tokio::test]
async fn a_session_signed_out_on_one_node_fails_on_the_other_at_once() {
    redis_must_answer();
    let cluster = Cluster::start().await;
    let mut on_a = signed_in(&cluster.a().base_url, "alice", true).await;
    let token = on_a.token().unwrap().to_owned();
    let same_on_b = Client::new(&cluster.b.base_url).with_token(token);
    assert!(same_on_b.me().await.is_ok(), "node B knows the session (and caches it)");
    let mut socket = same_on_b.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();

    on_a.logout().await.unwrap();

    let closed = socket.next_frame_within(WAIT).await;
    assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    assert_eq!(socket.close_code(), Some(4003));
    let err = same_on_b.me().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_client_cut_from_one_node_resumes_on_the_other_without_loss() {
    redis_must_answer();
    let cluster = Cluster::start().await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob_a = signed_in(&cluster.a().base_url, "bob", true).await;
    let chat = alice.create_direct(&bob_a.me().await.unwrap().id).await.unwrap();
    let mut socket = bob_a.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();
    alice.send_text(&chat.id, "before").await.unwrap();
    socket.next_of("new_message").await.unwrap();
    let cursor = socket.cursor().unwrap().to_owned();
    drop(socket);

    for i in 0..10 {
        alice.send_text(&chat.id, &format!("while away {i}")).await.unwrap();
    }
    let bob_b = Client::new(&cluster.b.base_url).with_token(bob_a.token().unwrap());
    let mut resumed = bob_b.connect_ws(Some(&cursor)).await.unwrap();

    let mut contents = Vec::new();
    while contents.len() < 10 {
        let frame = resumed.next_frame_within(WAIT).await.unwrap().expect("open");
        if let Ok(Event::NewMessage(m)) = frame.event() {
            contents.push(m.content);
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("while away {i}")).collect();
    assert_eq!(contents, expected);
}

#[tokio::test]
async fn killing_one_node_leaves_the_other_serving_and_its_users_go_offline() {
    redis_must_answer();
    let mut cluster = Cluster::start().await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob = signed_in(&cluster.b.base_url, "bob", true).await;
    let chat = alice.create_direct(&bob.me().await.unwrap().id).await.unwrap();
    let mut alice_socket = alice.connect_ws(None).await.unwrap();
    alice_socket.next_of("ready").await.unwrap();
    let alice_id = alice.me().await.unwrap().id;
    let online =
        |list: Vec<confab_client::Presence>| list.iter().any(|p| p.user_id == alice_id && p.online);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !online(bob.list_presence().await.unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "bob sees alice online through node B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.a.take().expect("node A").kill9().await;

    // Node B serves on: bob sends and reads.
    let mut seen = HashSet::new();
    let m = bob.send_text(&chat.id, "are you there?").await.unwrap();
    seen.insert(m.id.clone());
    let page = bob.list_messages(&chat.id, &Default::default()).await.unwrap();
    assert!(page.messages.iter().any(|x| x.id == m.id));
    // Alice was connected only to the dead node: she goes offline after the timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while online(bob.list_presence().await.unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "alice goes offline after node A died");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `deploy/nginx.conf` made runnable here: the two upstreams pointed at the nodes, TLS and the
/// port-80 redirect left out (the certificate is the operator's), everything else as shipped.
fn local_nginx_config(
    template: &str,
    listen: u16,
    a: &str,
    b: &str,
    dir: &std::path::Path,
) -> String {
    let mut site = String::new();
    let (mut skipping_redirect, mut redirect_skipped) = (false, false);
    for line in template.lines() {
        let t = line.trim();
        if t.starts_with("server {") && !redirect_skipped {
            // The first server block is the port-80 redirect.
            (skipping_redirect, redirect_skipped) = (true, true);
            continue;
        }
        if skipping_redirect {
            if t == "}" {
                skipping_redirect = false;
            }
            continue;
        }
        let line = if t.starts_with("listen 443") {
            format!("    listen 127.0.0.1:{listen};")
        } else if t.starts_with("listen [::]") || t.starts_with("ssl_") || t == "http2 on;" {
            continue;
        } else {
            line.replace("127.0.0.1:8081", a).replace("127.0.0.1:8082", b)
        };
        site.push_str(&line);
        site.push('\n');
    }
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n{site}}}\n"
    )
}

#[tokio::test]
async fn two_nodes_behind_the_shipped_nginx_config_serve_http_and_websockets() {
    redis_must_answer();
    let nginx = which_nginx();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx.conf"),
    )
    .expect("deploy/nginx.conf");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let config = local_nginx_config(
        &template,
        port,
        &host(&cluster.a().base_url),
        &host(&cluster.b.base_url),
        dir.path(),
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut proxy = tokio::process::Command::new(nginx)
        .arg("-c")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nginx starts");
    let base = format!("http://127.0.0.1:{port}");
    let probe = Client::new(&base);
    let deadline = tokio::time::Instant::now() + WAIT;
    while probe.health().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx answers: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything through the balancer: requests land on either node.
    let alice = signed_in(&base, "alice", true).await;
    let bob = signed_in(&base, "bob", true).await;
    let chat = alice.create_direct(&bob.me().await.unwrap().id).await.unwrap();
    let mut socket = bob.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();
    for i in 0..20 {
        alice.send_text(&chat.id, &format!("via nginx {i}")).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let frame = socket.next_frame_within(WAIT).await.unwrap().expect("open through nginx");
        if let Ok(Event::NewMessage(m)) = frame.event() {
            got.push(m.content);
        }
    }
    assert_eq!(got, (0..20).map(|i| format!("via nginx {i}")).collect::<Vec<_>>());
    // The nodes saw the client's address through the trusted proxy header path only when
    // configured; the session list still answers through the balancer.
    assert!(!alice.list_sessions().await.unwrap().is_empty());
    let _ = proxy.start_kill();
}

/// nginx for the load-balancer test; `.ci/run` installs it. Missing nginx fails the test.
fn which_nginx() -> &'static str {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("nginx is required for the load-balancer test (apt-get install nginx-light)");
}

#[tokio::test]
async fn rate_limits_and_the_login_back_off_are_shared_by_the_nodes() {
    redis_must_answer();
    let cluster = Cluster::start_with(&["--limit-send", "1/h,3"]).await;
    let alice_on_a = signed_in(&cluster.a().base_url, "alice", true).await;
    let alice_on_b = signed_in(&cluster.b.base_url, "alice", false).await;
    let bob_on_b = signed_in(&cluster.b.base_url, "bob", true).await;
    let chat = alice_on_a.create_direct(&bob_on_b.me().await.unwrap().id).await.unwrap();

    // Three sends in all, whichever node: the fourth is refused on either.
    alice_on_a.send_text(&chat.id, "one").await.unwrap();
    alice_on_b.send_text(&chat.id, "two").await.unwrap();
    alice_on_a.send_text(&chat.id, "three").await.unwrap();
    let refused = alice_on_b.send_text(&chat.id, "four").await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(429), "rate_limited"), "{refused}");
    let page = bob_on_b.list_messages(&chat.id, &Default::default()).await.unwrap();
    assert_eq!(page.messages.len(), 3, "the refused send stored nothing");
    // Bob's bucket is his own.
    bob_on_b.send_text(&chat.id, "bob is fine").await.unwrap();

    // Five wrong passwords spread over both nodes: the sixth attempt waits, on either node,
    // even with the right password.
    for i in 0..5 {
        let node = if i % 2 == 0 { &cluster.a().base_url } else { &cluster.b.base_url };
        let err = Client::new(node).login("alice", "not the password").await.unwrap_err();
        assert_eq!(err.status(), Some(401), "{err}");
    }
    for node in [&cluster.a().base_url, &cluster.b.base_url] {
        let err = Client::new(node).login("alice", PASSWORD).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(429), "rate_limited"), "{err}");
    }
}

/// A TCP relay in front of the real Redis that the test can cut: while cut, every connection
/// through it is closed and new ones are closed at once, as if Redis were down.
struct RedisRelay {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl RedisRelay {
    async fn start() -> RedisRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue;
                }
                let mut cut = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut redis) = tokio::net::TcpStream::connect("127.0.0.1:6379").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut redis) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        RedisRelay { port, cut }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn set_down(&self, down: bool) {
        self.cut.send_replace(down);
    }
}

#[tokio::test]
async fn a_redis_outage_leaves_each_node_serving_and_clients_recover_what_they_missed() {
    redis_must_answer();
    let relay = RedisRelay::start().await;
    let cluster = Cluster::start_on(&relay.url(), &[]).await;
    let alice = signed_in(&cluster.a().base_url, "alice", true).await;
    let bob = signed_in(&cluster.b.base_url, "bob", true).await;
    let chat = alice.create_direct(&bob.me().await.unwrap().id).await.unwrap();
    let mut socket = bob.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();
    alice.send_text(&chat.id, "before").await.unwrap();
    socket.next_of("new_message").await.unwrap();

    relay.set_down(true);
    // Both nodes keep serving their own clients: sends are stored and answered, history reads.
    for i in 0..3 {
        alice.send_text(&chat.id, &format!("during {i}")).await.unwrap();
    }
    let page = bob.list_messages(&chat.id, &Default::default()).await.unwrap();
    assert_eq!(page.messages.len(), 4);
    relay.set_down(false);
    alice.send_text(&chat.id, "after").await.unwrap();

    // Bob's client gets every message once and in order: live if the bus carried it, or by
    // resuming from its cursor when node B closes the socket after reconnecting to Redis.
    let expected = ["during 0", "during 1", "during 2", "after"];
    let mut got: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < expected.len() {
        assert!(tokio::time::Instant::now() < deadline, "bob recovers everything; got {got:?}");
        match socket.next_frame_within(WAIT).await {
            Ok(Some(frame)) => {
                if let Ok(Event::NewMessage(m)) = frame.event() {
                    got.push(m.content);
                }
            }
            Err(confab_client::ClientError::Timeout) => {
                panic!("node B neither delivered nor closed the socket; got {got:?}")
            }
            // Closed (lagging): resume where the socket stopped, as a client does.
            _ => {
                let cursor = socket.cursor().map(str::to_owned);
                socket = bob.connect_ws(cursor.as_deref()).await.unwrap();
            }
        }
    }
    assert_eq!(got, expected, "every missed message once, in order");
}
