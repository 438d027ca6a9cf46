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
/// Connections served at once; more wait in the listen backlog.
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
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(io::Error::other)?;
            let (stream, peer) = listener.accept().await?;
            let (responder, metrics) = (responder.clone(), metrics.clone());
            tokio::spawn(async move {
                if let Err(error) =
                    serve_connection(stream, peer.ip().to_canonical(), &responder, &metrics).await
                {
                    log::debug!("TCP connection from {peer}: {error}");
                }
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
        metrics.count_userspace_query();
        if let Some(answer) = responder.respond(&query, client, Transport::Tcp) {
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            framed.extend_from_slice(&answer);
            stream.write_all(&framed).await?;
        }
    }
}
