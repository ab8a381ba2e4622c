//! Fuzzed HTTP requests against the real server: `App::build` with the test configuration on
//! 127.0.0.1 port 0, served on a background runtime, driven over one keep-alive HTTP/1.1
//! connection (reopened when the server closes it).
//!
//! The input is a request in a small text form, so the seed corpus is readable:
//!
//! ```text
//! POST /api/conversations/{conv}/messages?x=1
//! x-fuzz-auth: bearer
//! content-type: application/json
//!
//! {"content": "hi"}
//! ```
//!
//! The first line is the method and the path (with query). `{conv}` (a group of the fuzz user
//! and a peer), `{msg}` (a message in it), `{user}` (the peer) and `{me}` become real ids.
//! Header lines follow until an empty line; the rest is the body. `x-fuzz-auth` picks the
//! credentials: `bearer` (the default), `cookie` (session cookie only), `cookie-csrf` (cookie
//! and the matching `X-CSRF-Token`), `bad` (a wrong bearer token) or `none`.
//!
//! Properties: no answer is a 5xx other than 503, every 4xx under `/api/` carries the JSON
//! error body `{"error": {"code", "message"}}`, and the server keeps accepting connections.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use confab_proto::{AuthResponse, Conversation, ErrorBody, Message};
use confab_server::{App, Config};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// The longest a request may take before it is given up (long-polls and event streams wait).
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);
const PASSWORD: &str = "fuzzing password 1";

/// The fuzz user's credentials and the ids the placeholders stand for.
#[derive(Default, Clone)]
struct Identity {
    token: String,
    cookies: String,
    csrf: String,
    me: String,
    peer: String,
    conv: String,
    msg: String,
}

struct Harness {
    runtime: Runtime,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
    identity: Mutex<Identity>,
    serial: Mutex<u64>,
}

struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    body: Option<Bytes>,
}

impl Harness {
    fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::start)
    }

    fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        // Durability is not under test; fsync per write would only slow the fuzzer down.
        config.sqlite_sync_full = false;
        let addr = runtime.block_on(async {
            let app = App::build(config).await.expect("the app builds");
            let addr = app.local_addr();
            tokio::spawn(app.run(std::future::pending()));
            addr
        });
        let harness = Harness {
            runtime,
            addr,
            _dir: dir,
            conn: Mutex::new(None),
            identity: Mutex::new(Identity::default()),
            serial: Mutex::new(0),
        };
        harness.sign_up();
        harness
    }

    /// Registers a fresh user and a peer, a group of both and a message in it.
    fn sign_up(&self) {
        let serial = {
            let mut serial = self.serial.lock().expect("lock");
            *serial += 1;
            *serial
        };
        let pid = std::process::id();
        let Some(peer) = self.register(&format!("fuzzpeer{pid}x{serial}")) else { return };
        let Some(me) = self.register(&format!("fuzzer{pid}x{serial}")) else { return };
        let mut id = Identity {
            token: me.0.token.clone(),
            cookies: me.1.join("; "),
            csrf: me.1.iter().find_map(|c| c.strip_prefix("confab_csrf=")).unwrap_or("").into(),
            me: me.0.user.id.clone(),
            peer: peer.0.user.id.clone(),
            ..Identity::default()
        };
        let auth = format!("Bearer {}", id.token);
        let create =
            format!(r#"{{"type":"group","title":"fuzz","participant_ids":["{}"]}}"#, id.peer);
        if let Some(c) = self.json::<Conversation>("POST", "/api/conversations", &auth, &create) {
            id.conv = c.id;
            let path = format!("/api/conversations/{}/messages", id.conv);
            if let Some(m) = self.json::<Message>("POST", &path, &auth, r#"{"content":"seed"}"#) {
                id.msg = m.id;
            }
        }
        *self.identity.lock().expect("lock") = id;
    }

    fn register(&self, username: &str) -> Option<(AuthResponse, Vec<String>)> {
        let body = format!(r#"{{"username":"{username}","password":"{PASSWORD}"}}"#);
        let answer = self.send(raw_request("POST", "/api/auth/register", "", &body)?)?;
        let cookies = answer
            .set_cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .map(|c| c.trim().to_owned())
            .collect();
        Some((serde_json::from_slice(answer.body.as_ref()?).ok()?, cookies))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: &str,
    ) -> Option<T> {
        let answer = self.send(raw_request(method, path, auth, body)?)?;
        serde_json::from_slice(answer.body.as_ref()?).ok()
    }

    /// Sends `request` on the kept-alive connection (opening one when needed). `None` when
    /// no answer came in time or the connection failed: the connection is then dropped.
    fn send(&self, request: Request<Full<Bytes>>) -> Option<Answer> {
        let mut guard = self.conn.lock().expect("lock");
        let addr = self.addr;
        let (answer, keep) = self.runtime.block_on(async {
            let mut sender = match guard.take() {
                Some(mut s) => match s.ready().await {
                    Ok(()) => s,
                    Err(_) => connect(addr).await,
                },
                None => connect(addr).await,
            };
            let exchange = async {
                let response = sender.send_request(request).await.ok()?;
                let status = response.status().as_u16();
                let set_cookies = response
                    .headers()
                    .get_all(hyper::header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                // Streams never end; only finite answers are read (and only 1 MiB of them).
                let is_stream = response
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                let body = if is_stream || status == 101 {
                    None
                } else {
                    Limited::new(response.into_body(), 1 << 20)
                        .collect()
                        .await
                        .ok()
                        .map(|b| b.to_bytes())
                };
                Some(Answer { status, set_cookies, body })
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
                Ok(Some(answer)) => {
                    let finished = answer.body.is_some();
                    (Some(answer), finished.then_some(sender))
                }
                _ => (None, None),
            }
        });
        *guard = keep;
        answer
    }
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("the server stopped accepting connections: {e}"));
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// A well-formed request built by the harness itself.
fn raw_request(method: &str, path: &str, auth: &str, body: &str) -> Option<Request<Full<Bytes>>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    if !auth.is_empty() {
        builder = builder.header("authorization", auth);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(Full::new(Bytes::copy_from_slice(body.as_bytes()))).ok()
}

/// The fuzz input as a request, or `None` when it cannot be one (an invalid method or URI).
fn parse_input(data: &[u8], id: &Identity) -> Option<(Request<Full<Bytes>>, String)> {
    let text_end = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match text_end {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let request_line = lines.next()?;
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
    let target = substitute(target.trim(), id);
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = target.parse().ok()?;
    // Only origin-form targets: an absolute URI would name another host.
    if uri.scheme().is_some() || uri.authority().is_some() {
        return None;
    }
    let path = uri.path().to_owned();
    let mut builder = Request::builder().method(method).uri(uri).header("host", "127.0.0.1");
    let mut auth = "bearer";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), substitute(value.trim(), id));
        if name.eq_ignore_ascii_case("x-fuzz-auth") {
            auth = match value.as_str() {
                "cookie" => "cookie",
                "cookie-csrf" => "cookie-csrf",
                "bad" => "bad",
                "none" => "none",
                _ => "bearer",
            };
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { continue };
        // Framing and upgrades are the client library's business: a conflicting length
        // would only desynchronise the connection, and an upgrade would take it over.
        if matches!(
            name.as_str(),
            "content-length"
                | "transfer-encoding"
                | "connection"
                | "upgrade"
                | "host"
                | "te"
                | "expect"
        ) {
            continue;
        }
        let Ok(value) = HeaderValue::from_str(&value) else { continue };
        builder = builder.header(name, value);
    }
    builder = match auth {
        "bearer" => builder.header("authorization", format!("Bearer {}", id.token)),
        "bad" => {
            builder.header("authorization", "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        }
        "cookie" => builder.header("cookie", &id.cookies),
        "cookie-csrf" => builder.header("cookie", &id.cookies).header("x-csrf-token", &id.csrf),
        _ => builder,
    };
    let request = builder.body(Full::new(Bytes::copy_from_slice(body))).ok()?;
    Some((request, path))
}

fn substitute(text: &str, id: &Identity) -> String {
    text.replace("{conv}", &id.conv)
        .replace("{msg}", &id.msg)
        .replace("{user}", &id.peer)
        .replace("{me}", &id.me)
}

fuzz_target!(|data: &[u8]| {
    let harness = Harness::get();
    let identity = harness.identity.lock().expect("lock").clone();
    let Some((request, path)) = parse_input(data, &identity) else { return };
    let method = request.method().clone();
    let Some(answer) = harness.send(request) else { return };
    let status = answer.status;

    assert!(
        status < 500 || status == 503,
        "{method} {path} answered {status}: {}",
        answer.body.as_deref().map(String::from_utf8_lossy).unwrap_or_default()
    );
    if (400..500).contains(&status) && path.starts_with("/api/") && method != Method::HEAD {
        if let Some(body) = &answer.body {
            assert!(
                serde_json::from_slice::<ErrorBody>(body).is_ok(),
                "{method} {path} answered {status} without the JSON error body: {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    // Signing out, revoking sessions or changing the password ends the fuzz session: start a
    // new one so later inputs still get past authentication.
    let ends_session = path.contains("logout")
        || path.contains("sessions")
        || path.contains("password")
        || path.contains("auth");
    if (200..300).contains(&status) && ends_session {
        let probe = raw_request("GET", "/api/me", &format!("Bearer {}", identity.token), "");
        let alive = probe.and_then(|r| harness.send(r)).is_some_and(|a| a.status == 200);
        if !alive {
            harness.sign_up();
        }
    }
});
