//! UDP: one socket per core on the same address (`SO_REUSEPORT`), so the
//! kernel spreads queries across cores without a shared queue.

use std::{io, net::SocketAddr, sync::Arc};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, task::JoinSet};

use super::{Responder, Transport};
use crate::metrics::Metrics;

/// Largest datagram read; longer ones are cut and then fail to parse.
const MAX_DATAGRAM: usize = 65_535;

/// Binds `sockets` UDP sockets on `listen` and answers on each.
pub fn serve_udp(
    listen: SocketAddr,
    sockets: usize,
    responder: Arc<Responder>,
    metrics: Arc<Metrics>,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    for _ in 0..sockets.max(1) {
        let socket = bind(listen)?;
        let (responder, metrics) = (responder.clone(), metrics.clone());
        tasks.spawn(async move {
            let mut buffer = vec![0u8; MAX_DATAGRAM];
            loop {
                let (len, peer) = socket.recv_from(&mut buffer).await?;
                metrics.count_userspace_query();
                if let Some(answer) = responder.respond(&buffer[..len], Transport::Udp) {
                    // A peer that went away is its problem, not the server's.
                    if let Err(error) = socket.send_to(&answer, peer).await {
                        log::debug!("answering {peer}: {error}");
                    }
                }
            }
        });
    }
    Ok(())
}

fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    if listen.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}
