//! DNS over TCP (RFC 7766): length-prefixed messages, several per
//! connection, closed when idle.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};

use super::{Responder, Transport};
use crate::metrics::Metrics;

/// How long a connection may sit without a complete query.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed as they arrive (and
/// counted), so that a flood of idle connections cannot hold the port.
const MAX_CONNECTIONS: usize = 1024;

/// Accepts TCP connections on `listen` and answers their queries in order.
pub async fn serve_tcp(
    listen: SocketAddr,
    responder: Arc<Responder>,
    metrics: Arc<Metrics>,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tasks.spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory, a connection reset
                    // before it was taken: the listener itself is fine.
                    metrics.tcp_receive_errors.inc();
                    tracing::debug!("accepting a TCP connection: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                metrics.tcp_refused.inc();
                continue;
            };
            let (responder, metrics) = (responder.clone(), metrics.clone());
            tokio::spawn(async move {
                metrics.tcp_open.inc();
                if let Err(error) =
                    serve_connection(stream, peer.ip().to_canonical(), &responder, &metrics).await
                {
                    metrics.tcp_receive_errors.inc();
                    tracing::debug!("TCP connection from {peer}: {error}");
                }
                metrics.tcp_open.dec();
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn serve_connection(
    mut stream: TcpStream,
    client: IpAddr,
    responder: &Responder,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut query = Vec::new();
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            // Idle too long, or the client closed: both end the connection.
            Err(_) | Ok(Err(_)) => return Ok(()),
        }
        query.resize(u16::from_be_bytes(prefix) as usize, 0);
        tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut query))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query body timed out"))??;
        let received = std::time::Instant::now();
        metrics.count_userspace_query();
        metrics.top_names.count([query.as_slice()]);
        if let Some(cold) = responder.cold_hold(&query) {
            cold.wake();
            cold.ready_within(cold.deadline).await;
        }
        if let Some(answer) = responder.respond(&query, client, Transport::Tcp) {
            metrics.count_answer(&query, &answer, received.elapsed());
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            framed.extend_from_slice(&answer);
            stream.write_all(&framed).await?;
        }
    }
}
