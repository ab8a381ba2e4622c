//! The server as a separate process (the real `confab` binary), for what an in-process server
//! cannot show: SIGKILL in the middle of concurrent sends, fsync ordering seen by strace, and
//! SIGTERM with requests in flight.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_client::{Client, SendMessage};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::PASSWORD;

/// A hang guard for start-up and exit, not a speed assertion.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// A `confab` process on 127.0.0.1 with its own data folder.
pub struct ServerProcess {
    child: Child,
    /// Started under a wrapper (strace): signals go to the wrapper's child, the server.
    wrapped: bool,
    pub base_url: String,
}

impl ServerProcess {
    /// Starts `confab serve` on `data_dir`, prefixed by `wrapper` (e.g. strace), and waits
    /// for its "listening" log line to learn the port.
    pub async fn start(data_dir: &Path, extra: &[&str], wrapper: &[&str]) -> ServerProcess {
        let binary = env!("CARGO_BIN_EXE_confab");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CONFAB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the confab binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(PROCESS_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("log lines") {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["fields"]["message"] == "confab listening"
                {
                    return json["fields"]["addr"].as_str().expect("addr field").to_owned();
                }
            }
            panic!("confab exited before listening");
        })
        .await
        .expect("confab starts listening");
        // Keep reading the logs so the pipe never fills up and blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess { child, wrapped: !wrapper.is_empty(), base_url: format!("http://{addr}") }
    }

    /// The server's pid (under a wrapper, the wrapper's child).
    fn pid(&self) -> u32 {
        let pid = self.child.id().expect("a running process has a pid");
        if !self.wrapped {
            return pid;
        }
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("the wrapper's children are listed in /proc");
        children.split_whitespace().next().and_then(|c| c.parse().ok()).expect("a child")
    }

    /// SIGKILL: no chance to flush or close anything.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }

    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit and answers whether it exited cleanly.
    pub async fn wait(mut self) -> bool {
        tokio::time::timeout(PROCESS_TIMEOUT, self.child.wait())
            .await
            .expect("the process exits")
            .expect("wait")
            .success()
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `PRAGMA integrity_check` of the database in `data_dir` (the server must be stopped).
async fn integrity_check(data_dir: &Path) -> String {
    let path = data_dir.join("confab.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the database");
    let result: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.expect("check");
    conn.close().await.expect("close");
    result
}

struct Sender {
    token: String,
    conversation: String,
}

/// Registers `count` users through `base` and puts them, `per_group` at a time, in groups.
async fn senders(base: &str, count: usize, per_group: usize) -> Vec<Sender> {
    let mut users = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = Client::new(base);
        let auth = client.register(&format!("sender{i:02}"), PASSWORD).await.expect("register");
        users.push((client, auth.user.id));
    }
    let mut out = Vec::with_capacity(count);
    for chunk in users.chunks(per_group) {
        let ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
        let group = chunk[0].0.create_group("load", &ids[1..]).await.expect("group");
        for (client, _) in chunk {
            out.push(Sender {
                token: client.token().expect("signed in").to_owned(),
                conversation: group.id.clone(),
            });
        }
    }
    out
}

/// Every message of a conversation, reading with `token`.
async fn all_messages(base: &str, token: &str, conversation: &str) -> Vec<confab_client::Message> {
    let client = Client::new(base).with_token(token);
    crate::harness::history(&client, conversation).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_during_concurrent_sends() {
    const SENDERS: usize = 32;
    let cycles = env_number("CONFAB_CRASH_CYCLES", 5);
    let per_cycle = env_number("CONFAB_CRASH_SENDS", 500);
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[], &[]).await;
    let senders = Arc::new(senders(&server.base_url, SENDERS, SENDERS / 4).await);
    // Everything ever acknowledged: (sender index, client_id).
    let mut acknowledged: HashSet<(usize, String)> = HashSet::new();
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
            as usize;

    for cycle in 0..cycles {
        let acked_now = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
        let base = server.base_url.clone();
        let mut tasks = Vec::new();
        for (index, sender) in senders.iter().enumerate() {
            let (base, token) = (base.clone(), sender.token.clone());
            let conversation = sender.conversation.clone();
            let acked_now = acked_now.clone();
            tasks.push(tokio::spawn(async move {
                let client = Client::new(&base).with_token(token);
                for i in 0..per_cycle / SENDERS {
                    let client_id = format!("c{cycle}-s{index}-m{i}");
                    let body = SendMessage {
                        content: format!("cycle {cycle} sender {index} message {i}"),
                        client_id: Some(client_id.clone()),
                        reply_to: None,
                    };
                    match client.send_message(&conversation, &body).await {
                        Ok(_) => acked_now.lock().unwrap().push((index, client_id)),
                        Err(_) => return, // the server died under us
                    }
                }
            }));
        }
        // Kill at a random point of the cycle: after 1 to per_cycle-1 acknowledgements.
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let kill_after = 1 + (seed >> 33) % (per_cycle - 1);
        loop {
            let done = tasks.iter().all(|t| t.is_finished());
            if acked_now.lock().unwrap().len() >= kill_after || done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.kill9().await;
        for task in tasks {
            task.await.unwrap();
        }
        let acked_this_cycle = acked_now.lock().unwrap().clone();
        acknowledged.extend(acked_this_cycle.iter().cloned());

        server = ServerProcess::start(dir.path(), &[], &[]).await;
        // Every sender re-sends what was not acknowledged, with the same client_id.
        for (index, sender) in senders.iter().enumerate() {
            let client = Client::new(&server.base_url).with_token(&sender.token);
            for i in 0..per_cycle / SENDERS {
                let client_id = format!("c{cycle}-s{index}-m{i}");
                if acknowledged.contains(&(index, client_id.clone())) {
                    continue;
                }
                let body = SendMessage {
                    content: format!("cycle {cycle} sender {index} message {i}"),
                    client_id: Some(client_id.clone()),
                    reply_to: None,
                };
                client.send_message(&sender.conversation, &body).await.expect("re-send");
                acknowledged.insert((index, client_id));
            }
        }

        // Read back the whole history of every conversation.
        let mut rows: HashMap<(String, String), usize> = HashMap::new();
        let conversations: HashSet<(String, String)> =
            senders.iter().map(|s| (s.conversation.clone(), s.token.clone())).collect();
        let mut seen_conversations = HashSet::new();
        for (conversation, token) in &conversations {
            if !seen_conversations.insert(conversation.clone()) {
                continue;
            }
            let messages = all_messages(&server.base_url, token, conversation).await;
            let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
            let expected: Vec<i64> = (1..=messages.len() as i64).collect();
            assert_eq!(seqs, expected, "cycle {cycle}: seq is gapless in {conversation}");
            for m in messages {
                let client_id = m.client_id.expect("every test message has a client_id");
                *rows.entry((m.sender_id, client_id)).or_default() += 1;
            }
        }
        let doubled = rows.values().filter(|&&n| n > 1).count();
        let stored: HashSet<&str> = rows.keys().map(|(_, c)| c.as_str()).collect();
        let lost = acknowledged.iter().filter(|(_, c)| !stored.contains(c.as_str())).count();
        println!(
            "cycle {cycle}: killed after {} acks; acknowledged-but-lost = {lost}; doubled = {doubled}; rows = {}",
            acked_this_cycle.len(),
            rows.len()
        );
        assert_eq!(lost, 0, "cycle {cycle}: acknowledged messages were lost");
        assert_eq!(doubled, 0, "cycle {cycle}: a client_id was stored twice");
    }
    server.sigterm();
    assert!(server.wait().await, "clean exit");
    assert_eq!(integrity_check(dir.path()).await, "ok");
}

/// The time a syscall line started, and when it returned.
struct Syscall {
    start: f64,
    end: f64,
    line: String,
}

/// Reads an `strace -f -ttt -T -y` log, joining `<unfinished ...>` with `<... resumed>`.
fn parse_strace(text: &str) -> Vec<Syscall> {
    let mut pending: HashMap<String, (f64, String)> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        // strace pads the pid column: split on runs of spaces for the first two fields.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else { continue };
        let Some((time, rest)) = rest.trim_start().split_once(' ') else { continue };
        let Ok(time) = time.parse::<f64>() else { continue };
        let duration = rest
            .rsplit_once('<')
            .and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok())
            .unwrap_or(0.0);
        if rest.ends_with("<unfinished ...>") {
            pending.insert(pid.to_owned(), (time, rest.to_owned()));
        } else if rest.starts_with("<...") {
            if let Some((start, first)) = pending.remove(pid) {
                calls.push(Syscall { start, end: time, line: first + rest });
            }
        } else {
            calls.push(Syscall { start: time, end: time + duration, line: rest.to_owned() });
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledgement_is_written_after_the_fsync_of_its_commit() {
    const MESSAGES: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace = dir.path().join("trace.txt");
    let trace_arg = trace.display().to_string();
    let strace = [
        "strace",
        "-f",
        "-ttt",
        "-T",
        "-y",
        "-s",
        "9000",
        "-o",
        &trace_arg,
        "-e",
        "trace=pwrite64,write,writev,fsync,fdatasync,sendto,sendmsg",
    ];
    let server = ServerProcess::start(&data, &[], &strace).await;
    let mut alice = Client::new(&server.base_url);
    alice.register("alice", PASSWORD).await.unwrap();
    let mut bob = Client::new(&server.base_url);
    let bob_id = bob.register("bob", PASSWORD).await.unwrap().user.id;
    let conversation = alice.create_direct(&bob_id).await.unwrap().id;

    let mut tasks = Vec::new();
    for task in 0..8 {
        let (client, conversation) = (alice.clone(), conversation.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MESSAGES / 8 {
                let n = task * 100 + i;
                client.send_text(&conversation, &format!("zq{n}zq")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.sigterm();
    assert!(server.wait().await);

    let calls = parse_strace(&std::fs::read_to_string(&trace).unwrap());
    let is_wal = |c: &Syscall| c.line.contains("confab.db-wal>");
    let syncs: Vec<&Syscall> = calls
        .iter()
        .filter(|c| is_wal(c) && (c.line.starts_with("fsync(") || c.line.starts_with("fdatasync(")))
        .collect();
    let mut checked = 0;
    let mut before_fsync = 0;
    for task in 0..8 {
        for i in 0..MESSAGES / 8 {
            let marker = format!("zq{}zq", task * 100 + i);
            // The first WAL write holding the marker belongs to the commit that stored the
            // message; later ones rewrite the same pages for later commits.
            let wal_write = calls
                .iter()
                .filter(|c| {
                    is_wal(c) && c.line.starts_with("pwrite64(") && c.line.contains(&marker)
                })
                .map(|c| c.end)
                .fold(f64::NAN, f64::min);
            let ack = calls
                .iter()
                .filter(|c| c.line.contains("socket:[") && c.line.contains(&marker))
                .filter(|c| c.line.contains("201 Created"))
                .map(|c| c.start)
                .fold(f64::NAN, f64::min);
            assert!(!wal_write.is_nan(), "{marker}: its commit reached the WAL");
            assert!(!ack.is_nan(), "{marker}: its 201 was written to the socket");
            let synced = syncs.iter().any(|s| s.start >= wal_write && s.end <= ack);
            checked += 1;
            if !synced {
                before_fsync += 1;
            }
        }
    }
    println!(
        "acknowledgements checked = {checked}; before their fsync = {before_fsync}; WAL syncs = {}",
        syncs.len()
    );
    assert_eq!(checked, MESSAGES);
    assert_eq!(before_fsync, 0, "an acknowledgement was written before its commit was synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_in_flight_and_closes_every_socket_with_a_restart_code() {
    const REQUESTS: usize = 200;
    const SOCKETS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["--max-connections-per-user", "100", "--shutdown-drain-ms", "2000"],
        &[],
    )
    .await;
    let mut alice = Client::new(&server.base_url);
    alice.register("alice", PASSWORD).await.unwrap();
    let mut bob = Client::new(&server.base_url);
    let bob_id = bob.register("bob", PASSWORD).await.unwrap().user.id;
    let conversation = alice.create_direct(&bob_id).await.unwrap().id;
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let mut ws = bob.connect_ws(None).await.unwrap();
        ws.next_of("ready").await.unwrap();
        sockets.push(ws);
    }
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let token = alice.token().unwrap().to_owned();
    // Every request is fully written before the signal: all 200 are in flight.
    let mut connections = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let body = format!(r#"{{"content":"in flight {i}","client_id":"f{i}"}}"#);
        let request = format!(
            "POST /api/conversations/{conversation}/messages HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        connections.push(stream);
    }

    server.sigterm();

    let mut created = 0;
    let mut unavailable = 0;
    for mut stream in connections {
        let mut response = String::new();
        tokio::time::timeout(PROCESS_TIMEOUT, stream.read_to_string(&mut response))
            .await
            .expect("an answer arrives")
            .expect("the answer is readable");
        let status = response.split(' ').nth(1).unwrap_or_default().to_owned();
        match status.as_str() {
            "201" => created += 1,
            "503" => {
                assert!(response.contains(r#""code":"unavailable""#), "JSON 503: {response}");
                // The refusal carries the security headers of every other answer.
                let head = response.to_ascii_lowercase();
                for h in [
                    "x-content-type-options: nosniff",
                    "cache-control: no-store",
                    "x-frame-options: deny",
                ] {
                    assert!(head.contains(h), "503 without {h}: {response}");
                }
                unavailable += 1;
            }
            _ => panic!("every in-flight request is answered 201 or a JSON 503, got: {response:?}"),
        }
    }
    for ws in &mut sockets {
        while ws.next_frame().await.unwrap().is_some() {}
        assert!(matches!(ws.close_code(), Some(1001 | 1012)), "close code {:?}", ws.close_code());
    }
    assert!(server.wait().await, "clean exit after SIGTERM");
    println!(
        "in flight = {REQUESTS}: 201 = {created}, 503 = {unavailable}; sockets closed = {SOCKETS}"
    );
    assert_eq!(created + unavailable, REQUESTS);
    assert_eq!(integrity_check(dir.path()).await, "ok");

    let server = ServerProcess::start(dir.path(), &[], &[]).await;
    let alice = Client::new(&server.base_url).with_token(token);
    let stored = crate::harness::history(&alice, &conversation).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=created as i64).collect::<Vec<_>>(), "every 201 is stored, gapless");
    server.sigterm();
    assert!(server.wait().await);
}
