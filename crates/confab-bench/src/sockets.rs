//! WebSocket clients below the SDK: many thousands of them, from several 127.0.0.x source
//! addresses (so one address's ephemeral ports do not run out), with small buffers (so the
//! harness's own memory stays small), each read by a task that answers pings and, for
//! receivers, timestamps the benchmark messages it sees.
//!
//! A benchmark message's content is `bench:<round>:<micros>`: the round (fan-out) and the
//! send time (or scheduled send time) in microseconds since the run's start.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::{Progress, histogram, record};

pub type Ws = WebSocketStream<TcpStream>;

/// How many loopback source addresses connections are spread over.
const SOURCES: u32 = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where one socket connects: the path (with query) and the bearer token, if any.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub path: String,
    pub token: Option<String>,
}

/// The source address of the `i`th connection: 127.0.0.1 to 127.0.0.8 in turn.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i as u32 % SOURCES) as u8)
}

/// Opens one socket and waits for its first frame (`ready`).
pub async fn connect(server: SocketAddr, endpoint: &Endpoint, i: usize) -> anyhow::Result<Ws> {
    let open = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source(i), 0)))?;
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let mut request = format!("ws://{server}{}", endpoint.path).into_client_request()?;
        if let Some(token) = &endpoint.token {
            request
                .headers_mut()
                .insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
        }
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => return anyhow::Ok(ws),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before its first frame"),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open).await.context("connect timed out")?
}

/// Opens a socket per endpoint, at most `parallel` handshakes at a time. Answers the sockets
/// that opened (in order, `None` for failures) and the first error seen.
pub async fn connect_all(
    server: SocketAddr,
    endpoints: Vec<Endpoint>,
    parallel: usize,
    progress: &Arc<Progress>,
) -> (Vec<Option<Ws>>, Option<String>) {
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(endpoints.len());
    for (i, endpoint) in endpoints.into_iter().enumerate() {
        let permits = permits.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.expect("the semaphore is never closed");
            let result = connect(server, &endpoint, i).await;
            match &result {
                Ok(_) => Progress::add(&progress.connected, 1),
                Err(_) => Progress::add(&progress.errors, 1),
            }
            result
        }));
    }
    let mut sockets = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(ws)) => sockets.push(Some(ws)),
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| format!("{e:#}"));
                sockets.push(None);
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
                sockets.push(None);
            }
        }
    }
    (sockets, first_error)
}

/// Per-round tallies for the fan-out scenario.
pub struct Round {
    pub received: AtomicU64,
    /// Micros since the start when the latest copy arrived.
    pub last_us: AtomicU64,
}

/// What receivers share: the clock, the counters, the send-to-deliver latencies and (for
/// fan-out) the rounds.
pub struct Recorder {
    pub start: Instant,
    pub progress: Arc<Progress>,
    pub rounds: Vec<Round>,
    /// Frames other than benchmark messages (presence, receipts): how busy the sockets are.
    pub other_frames: AtomicU64,
    latencies: Mutex<Histogram<u64>>,
}

impl Recorder {
    pub fn new(start: Instant, progress: Arc<Progress>, rounds: usize) -> Arc<Recorder> {
        let rounds = (0..rounds)
            .map(|_| Round { received: AtomicU64::new(0), last_us: AtomicU64::new(0) })
            .collect();
        Arc::new(Recorder {
            start,
            progress,
            rounds,
            other_frames: AtomicU64::new(0),
            latencies: Mutex::new(histogram()),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// The latencies recorded since the last call.
    pub fn take(&self) -> Histogram<u64> {
        std::mem::replace(
            &mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()),
            histogram(),
        )
    }

    fn on_text(&self, text: &str) {
        let Some((round, sent_us)) = parse_content(text) else {
            self.other_frames.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.now_us();
        record(
            &mut self.latencies.lock().unwrap_or_else(|p| p.into_inner()),
            now.saturating_sub(sent_us),
        );
        Progress::add(&self.progress.delivered, 1);
        if let Some(r) = self.rounds.get(round as usize) {
            r.last_us.fetch_max(now, Ordering::Relaxed);
            r.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The content of a benchmark message, as sent.
pub fn content(round: u64, at_us: u64) -> String {
    format!("bench:{round}:{at_us}")
}

/// `(round, micros)` of the benchmark message in a frame, without parsing the whole JSON.
pub fn parse_content(frame: &str) -> Option<(u64, u64)> {
    if !frame.contains(r#""type":"new_message""#) {
        return None;
    }
    let start = frame.find(r#""content":"bench:"#)? + r#""content":"bench:"#.len();
    let rest = &frame[start..];
    let end = rest.find('"')?;
    let (round, at) = rest[..end].split_once(':')?;
    Some((round.parse().ok()?, at.parse().ok()?))
}

/// Reads `ws` until `stop` turns true or the socket closes, handing benchmark messages to the
/// recorder (idle sockets have none). Answers whether the server closed the socket first.
pub fn listen(
    mut ws: Ws,
    recorder: Option<Arc<Recorder>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        let closed_by_server = loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break false,
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(rec) = &recorder {
                            rec.on_text(text.as_str());
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break true,
                },
            }
        };
        if !closed_by_server {
            let _ = ws.close(None).await;
        }
        closed_by_server
    })
}

/// Listens on every socket that opened.
pub fn listen_all(
    sockets: Vec<Option<Ws>>,
    recorder: Option<&Arc<Recorder>>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<bool>> {
    sockets.into_iter().flatten().map(|ws| listen(ws, recorder.cloned(), stop.clone())).collect()
}

/// Stops the listeners; answers how many sockets the server had closed before.
pub async fn stop_all(
    stop: &watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<bool>>,
) -> u64 {
    let _ = stop.send(true);
    let mut closed = 0;
    for listener in listeners {
        closed += u64::from(listener.await.unwrap_or(true));
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_content_is_found_in_either_servers_frames() {
        let confab = r#"{"type":"new_message","payload":{"id":"x","content":"bench:3:12345","seq":1},"cursor":"a-1"}"#;
        assert_eq!(parse_content(confab), Some((3, 12345)));
        assert_eq!(parse_content(r#"{"type":"ready","payload":{}}"#), None);
        assert_eq!(
            parse_content(&format!(
                r#"{{"type":"new_message","payload":{{"content":"{}"}}}}"#,
                content(0, 7)
            )),
            Some((0, 7))
        );
    }
}
