//! The daemon's HTTP: [`fetch`], its one client request (webhooks, load
//! figures), and serving its HTTP endpoints (metrics, the control API) on
//! listeners bound at start, with limits against clients that hold
//! connections: at most so many at once (the rest wait in the listen
//! backlog), each closed when its deadline passes, whole, however slowly
//! the client sends or reads; one request per connection. A failed
//! `accept` (out of descriptors, say) is counted, logged at most every few
//! seconds, and tried again after a pause: it never ends the server.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use prometheus::IntCounter;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    sync::Semaphore,
    task::JoinSet,
};

/// How long a failed `accept` waits before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// What one server allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// A connection's whole life: reading the request, answering it.
    pub deadline: Duration,
}

/// A bound listener, served once the daemon has its routes.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Serves `router` on `listener` within `limits`, counting failed accepts
/// in `accept_errors`; `name` says which server in log lines.
pub fn serve(
    name: &'static str,
    listener: Listener,
    router: Router,
    limits: Limits,
    accept_errors: IntCounter,
    tasks: &mut JoinSet<std::io::Result<()>>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let failures = AcceptFailures::new(name, accept_errors);
    tasks.spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return Ok(());
            };
            let accepted = match &listener {
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, _)| Io::Tcp(stream)),
                Listener::Unix(unix) => unix.accept().await.map(|(stream, _)| Io::Unix(stream)),
            };
            let io = match accepted {
                Ok(io) => io,
                Err(error) => {
                    failures.pause_after(&error).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let connection: Pin<Box<dyn Future<Output = ()> + Send>> = match io {
                    Io::Tcp(stream) => Box::pin(serve_connection(stream, service)),
                    Io::Unix(stream) => Box::pin(serve_connection(stream, service)),
                };
                let _ = tokio::time::timeout(limits.deadline, connection).await;
                drop(permit);
            });
        }
    });
}

enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// One request, answered, on `stream`.
fn serve_connection<S>(
    stream: S,
    service: TowerToHyperService<Router>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    async move {
        let _ = connection.await;
    }
}

/// What a server does when `accept` fails: counts it, warns at most every
/// [`LOG_EVERY`] (saying how many were held back), and pauses for
/// [`ACCEPT_PAUSE`] before the next `accept`.
pub struct AcceptFailures {
    name: &'static str,
    counter: IntCounter,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl AcceptFailures {
    pub fn new(name: &'static str, counter: IntCounter) -> AcceptFailures {
        AcceptFailures {
            name,
            counter,
            last: Mutex::new(None),
            held_back: AtomicU64::new(0),
        }
    }

    /// Counts and logs `error`, then waits before the next `accept`.
    pub async fn pause_after(&self, error: &std::io::Error) {
        self.counter.inc();
        self.warn(error);
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }

    fn warn(&self, error: &std::io::Error) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let held_back = self.held_back.swap(0, Ordering::Relaxed);
        tracing::warn!(
            "{}: accepting a connection: {error} ({held_back} more since the last warning)",
            self.name
        );
    }
}

/// What [`fetch`] reads of a response body at most.
pub const FETCH_BODY_LIMIT: usize = 64 * 1024;

/// One HTTP/1.1 request to `uri` on a connection of its own, with a
/// `body` of the given content type if any: the status, and the body or
/// why it could not be read (more than [`FETCH_BODY_LIMIT`] bytes, say),
/// apart, so that a caller that wants only the status is not failed by
/// the body. The caller bounds the time.
pub async fn fetch(
    method: hyper::Method,
    uri: &hyper::Uri,
    body: Option<(&'static str, hyper::body::Bytes)>,
) -> Result<(hyper::StatusCode, Result<hyper::body::Bytes, String>), String> {
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::header::{CONTENT_TYPE, HOST};

    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority.as_str());
    let content = match body {
        Some((content_type, bytes)) => {
            request = request.header(CONTENT_TYPE, content_type);
            bytes
        }
        None => hyper::body::Bytes::new(),
    };
    let request = request
        .body(Full::new(content))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Read to the end so the connection closes cleanly.
    let body = Limited::new(response.into_body(), FETCH_BODY_LIMIT)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("reading the body: {e}"));
    Ok((status, body))
}
