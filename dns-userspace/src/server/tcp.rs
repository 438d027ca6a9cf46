//! DNS over TCP (RFC 7766): length-prefixed messages, several per
//! connection, answered in order; with the limits a server facing the
//! internet needs against clients that hold connections open.
//!
//! - At most [`MAX_CONNECTIONS`] connections, and [`PER_CLIENT`] from one
//!   address. When every slot is taken, the connection idle the longest
//!   is closed for the new one (RFC 7766 §6.2.3); with none idle, the new
//!   one waits a moment for a slot, then is closed.
//! - A connection idle (between messages) for [`IDLE_TIMEOUT`] is closed,
//!   as is one that takes longer than [`IO_TIMEOUT`] to send the rest of
//!   a message or to take an answer (a client that never reads), as Knot
//!   DNS does; and one that has asked [`MAX_QUERIES`] questions.
//! - A failed `accept` (out of descriptors, say) is counted, logged at
//!   most every few seconds, and tried again after a pause.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use super::{Responder, Transport};
use crate::{http::AcceptFailures, metrics::Metrics};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections from one client address at once.
pub const PER_CLIENT: usize = 32;
/// How long a connection may sit without starting a message.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a started message, or the write of an answer, may
/// take (Knot DNS's `tcp-io-timeout`).
pub const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// Questions one connection may ask; then it is closed after the answer.
pub const MAX_QUERIES: u32 = 10_000;

/// Accepts TCP connections on `listen` and answers their queries in order.
pub async fn serve_tcp(
    listen: SocketAddr,
    responder: Arc<Responder>,
    metrics: Arc<Metrics>,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let connections = Arc::new(Connections::new(MAX_CONNECTIONS, PER_CLIENT));
    let failures = AcceptFailures::new("DNS over TCP", metrics.accept_errors("dns"));
    tasks.spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    failures.pause_after(&error).await;
                    continue;
                }
            };
            let client = peer.ip().to_canonical();
            let (responder, metrics) = (responder.clone(), metrics.clone());
            let connections = connections.clone();
            tokio::spawn(async move {
                let Some(slot) = connections.admit(client).await else {
                    metrics.tcp_refused.inc();
                    return;
                };
                metrics.tcp_open.inc();
                if let Err(error) =
                    serve_connection(stream, client, Some(&slot), &responder, &metrics).await
                {
                    // Timed out, reset: the connection ends, nothing else.
                    metrics.tcp_receive_errors.inc();
                    tracing::debug!("TCP connection from {peer}: {error}");
                }
                metrics.tcp_open.dec();
                drop(slot);
            });
        }
    });
    Ok(())
}

/// Answers the DNS messages of one TCP connection's byte stream from
/// `client`, as the server does (without the server's connection limits):
/// for the fuzzer, which feeds it any bytes.
pub async fn answer_stream(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    client: IpAddr,
    responder: &Responder,
    metrics: &Metrics,
) -> io::Result<()> {
    serve_connection(stream, client, None, responder, metrics).await
}

async fn serve_connection(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    client: IpAddr,
    slot: Option<&Slot>,
    responder: &Responder,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut query = Vec::new();
    let set_idle = |idle| {
        if let Some(slot) = slot {
            slot.set_idle(idle);
        }
    };
    for _ in 0..MAX_QUERIES {
        let mut prefix = [0u8; 2];
        set_idle(true);
        let evicted = async {
            match slot {
                Some(slot) => slot.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut prefix)) => match read {
                Ok(Ok(_)) => {}
                // Idle too long, or the client closed: both end it.
                Err(_) | Ok(Err(_)) => return Ok(()),
            },
            // Closed for a new connection while every slot was taken.
            () = evicted => return Ok(()),
        }
        set_idle(false);
        query.resize(u16::from_be_bytes(prefix) as usize, 0);
        within(
            IO_TIMEOUT,
            stream.read_exact(&mut query),
            "the rest of a query",
        )
        .await?;
        let received = Instant::now();
        metrics.count_userspace_query();
        metrics.top_names.count([query.as_slice()]);
        if let Some(messages) = responder.transfer(&query, client) {
            for message in messages {
                send(&mut stream, &message, "taking a transfer").await?;
            }
            continue;
        }
        if let Some(cold) = responder.cold_hold(&query) {
            cold.wake();
            cold.ready_within(cold.deadline).await;
        }
        if let Some(answer) = responder.respond(&query, client, Transport::Tcp) {
            metrics.count_answer(&query, &answer, received.elapsed());
            send(&mut stream, &answer, "taking an answer").await?;
        }
    }
    Ok(())
}

/// Writes `message` after its two-byte length, within the I/O time-out.
async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    message: &[u8],
    what: &str,
) -> io::Result<()> {
    within(IO_TIMEOUT, stream.write_all(&framed(message)), what).await
}

/// `message` as DNS over TCP carries it: after its two-byte length
/// (RFC 1035 §4.2.2; messages are at most 65,535 bytes).
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// `io`, or a time-out error naming `what` after `limit`.
async fn within<T>(
    limit: Duration,
    io: impl Future<Output = io::Result<T>>,
    what: &str,
) -> io::Result<T> {
    tokio::time::timeout(limit, io)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out")))?
}

/// The connections being served: how many, from whom, which are idle.
struct Connections {
    slots: Arc<Semaphore>,
    per_client: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, Open>,
    per_client: HashMap<IpAddr, usize>,
}

struct Open {
    /// Since when it has been waiting for a message; `None` while busy.
    idle_since: Option<Instant>,
    evict: Arc<Notify>,
}

/// One connection's place: given back when dropped.
struct Slot {
    id: u64,
    client: IpAddr,
    connections: Arc<Connections>,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Connections {
    fn new(max: usize, per_client: usize) -> Connections {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            per_client,
            state: Mutex::new(State::default()),
        }
    }

    /// A slot for a connection from `client`, or `None` if it must be
    /// closed: its address has too many, or every slot stayed busy for
    /// [`IO_TIMEOUT`] after the longest idle one was asked to close.
    async fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        {
            let state = self.state.lock().ok()?;
            if state.per_client.get(&client).copied().unwrap_or(0) >= self.per_client {
                return None;
            }
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.evict_longest_idle();
                tokio::time::timeout(IO_TIMEOUT, self.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let mut state = self.state.lock().ok()?;
        let count = state.per_client.entry(client).or_default();
        if *count >= self.per_client {
            return None;
        }
        *count += 1;
        let id = state.next_id;
        state.next_id += 1;
        let evict = Arc::new(Notify::new());
        state.open.insert(
            id,
            Open {
                idle_since: None,
                evict: evict.clone(),
            },
        );
        Some(Slot {
            id,
            client,
            connections: self.clone(),
            evict,
            _permit: permit,
        })
    }

    /// Asks the connection idle the longest to close.
    fn evict_longest_idle(&self) {
        let Ok(state) = self.state.lock() else {
            return;
        };
        let longest = state
            .open
            .values()
            .filter_map(|open| Some((open.idle_since?, open)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, open)) = longest {
            open.evict.notify_one();
        }
    }
}

impl Slot {
    fn set_idle(&self, idle: bool) {
        if let Ok(mut state) = self.connections.state.lock()
            && let Some(open) = state.open.get_mut(&self.id)
        {
            open.idle_since = idle.then(Instant::now);
        }
    }

    async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut state) = self.connections.state.lock() else {
            return;
        };
        state.open.remove(&self.id);
        if let Some(count) = state.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                state.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_house_closes_its_longest_idle_connection() {
        let connections = Arc::new(Connections::new(2, 2));
        let first = connections.admit(addr(1)).await.unwrap();
        let second = connections.admit(addr(2)).await.unwrap();
        second.set_idle(true);
        tokio::time::advance(Duration::from_secs(1)).await;
        first.set_idle(true);
        // The third finds no free slot: the second, idle longest, is asked
        // to go, and the third gets its slot once it has.
        let third = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit(addr(3)).await.is_some() }
        });
        tokio::time::timeout(Duration::from_millis(10), second.evicted())
            .await
            .expect("the longest idle is told to close");
        drop(second);
        assert!(third.await.unwrap(), "the new connection is served");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_and_busy_clients_are_not_displaced() {
        let connections = Arc::new(Connections::new(2, 1));
        let _first = connections.admit(addr(1)).await.unwrap();
        assert!(
            connections.admit(addr(1)).await.is_none(),
            "one connection an address"
        );
        let _second = connections.admit(addr(2)).await.unwrap();
        // Both busy: the newcomer waits IO_TIMEOUT, then is turned away.
        let started = tokio::time::Instant::now();
        assert!(connections.admit(addr(3)).await.is_none());
        assert_eq!(started.elapsed(), IO_TIMEOUT);
    }
}
