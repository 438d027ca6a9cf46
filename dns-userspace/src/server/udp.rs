//! UDP: one socket per core on the same address (`SO_REUSEPORT`), so the
//! kernel spreads queries across cores without a shared queue, and one
//! thread per socket moving batches of datagrams per system call
//! (`recvmmsg`/`sendmmsg`): under load, one call carries many queries.
//! Every answer is first taken from the client network's rate limit; a
//! thread that fails is started again on its socket.

use std::{
    convert::Infallible,
    io::{self, IoSlice, IoSliceMut},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use dns_common::guard::Verdict;

use nix::{
    errno::Errno,
    sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg},
};
use prometheus::IntCounter;
use socket2::{Domain, Protocol, Socket, Type};

use super::{RateLimiter, Responder, ThreadLimiter, Transport, slip};
use crate::{backends::ColdStart, metrics::Metrics};

/// Datagrams per system call at most.
const BATCH: usize = 32;
/// Largest datagram read whole. Queries are far smaller; anything longer is
/// cut, fails to parse and is dropped or answered FORMERR.
const MAX_DATAGRAM: usize = 4096;

/// How long a failed UDP thread waits before it serves its socket again.
const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Binds `sockets` UDP sockets on `listen` and answers on each from a
/// thread of its own. A thread whose socket fails, or that panics, logs
/// it, is counted, and serves the socket again after a short pause; the
/// others go on serving meanwhile.
pub fn serve_udp(
    listen: SocketAddr,
    sockets: usize,
    responder: Arc<Responder>,
    metrics: Arc<Metrics>,
    limiter: &RateLimiter,
) -> io::Result<()> {
    // Held queries wait on the runtime, not on a receiving thread.
    let runtime = tokio::runtime::Handle::current();
    for index in 0..sockets.max(1) {
        let socket = Arc::new(bind(listen)?);
        let (responder, metrics) = (responder.clone(), metrics.clone());
        let runtime = runtime.clone();
        let mut limiter = limiter
            .for_thread()
            .ok_or_else(|| io::Error::other("no rate-limit handle left for a UDP thread"))?;
        let restarts = metrics.udp_restarts.clone();
        thread::Builder::new()
            .name(format!("dns-udp-{index}"))
            .spawn(move || {
                keep_serving(
                    &format!("UDP socket {index} on {listen}"),
                    &restarts,
                    || serve_socket(&socket, &responder, &metrics, &runtime, &mut limiter),
                )
            })?;
    }
    Ok(())
}

/// Runs `serve` for ever: each time it fails or panics, logs it, counts a
/// restart, and runs it again after [`RESTART_PAUSE`].
fn keep_serving(
    what: &str,
    restarts: &IntCounter,
    mut serve: impl FnMut() -> io::Result<Infallible>,
) -> ! {
    loop {
        match catch_unwind(AssertUnwindSafe(&mut serve)) {
            Ok(Err(error)) => tracing::error!("{what} failed: {error}"),
            Err(_) => tracing::error!("{what}: its thread panicked"),
        }
        restarts.inc();
        thread::sleep(RESTART_PAUSE);
        tracing::info!("{what}: serving again");
    }
}

fn serve_socket(
    socket: &Arc<UdpSocket>,
    responder: &Arc<Responder>,
    metrics: &Arc<Metrics>,
    runtime: &tokio::runtime::Handle,
    limiter: &mut ThreadLimiter,
) -> io::Result<Infallible> {
    let fd = socket.as_raw_fd();
    let mut buffers = vec![[0u8; MAX_DATAGRAM]; BATCH];
    let mut receive_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Answer buffers are reused, so answering allocates nothing per query.
    let mut answers: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(MAX_DATAGRAM))
        .collect();
    let mut peers: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    // Which received datagram each answer is for, and its length.
    let mut asked: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
    loop {
        peers.clear();
        asked.clear();
        let received: Vec<(usize, Option<SockaddrStorage>)> = {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|buffer| [IoSliceMut::new(buffer)])
                .collect();
            // Blocks for the first datagram only, then takes what is queued.
            match recvmmsg(
                fd,
                &mut receive_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(messages) => messages
                    .map(|message| (message.bytes, message.address))
                    .collect(),
                Err(errno) => {
                    metrics.udp_receive_errors.inc();
                    // A signal, or memory short for a moment: try again.
                    if matches!(errno, Errno::EINTR | Errno::ENOMEM | Errno::ENOBUFS) {
                        continue;
                    }
                    return Err(errno.into());
                }
            }
        };
        let received_at = Instant::now();
        metrics.count_userspace_queries(received.len() as u64);
        metrics.top_names.count(
            received
                .iter()
                .zip(&buffers)
                .map(|((len, _), b)| &b[..*len]),
        );
        for (index, ((len, peer), buffer)) in received.into_iter().zip(&buffers).enumerate() {
            let answer = &mut answers[peers.len()];
            let Some((peer, client)) = peer.and_then(|peer| Some((peer, peer_ip(&peer)?))) else {
                continue;
            };
            let query = &buffer[..len];
            let verdict = limiter.take(client, || responder.has_valid_cookie(query, client));
            if verdict == Verdict::Drop {
                metrics.count_rate_limited(false);
                continue;
            }
            if let Some(cold) = responder.cold_hold(&buffer[..len])
                && let Some(to) = socket_addr(&peer)
            {
                runtime.spawn(answer_when_ready(
                    cold,
                    buffer[..len].to_vec(),
                    client,
                    to,
                    (socket.clone(), responder.clone(), metrics.clone()),
                ));
                continue;
            }
            if !responder.respond_into(query, client, Transport::Udp, answer) {
                continue;
            }
            if verdict == Verdict::Slip {
                let Some(truncated) = slip(answer) else {
                    continue;
                };
                *answer = truncated;
                metrics.count_rate_limited(true);
            }
            peers.push(Some(peer));
            asked.push((index, len));
        }
        if peers.is_empty() {
            continue;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = answers[..peers.len()]
            .iter()
            .map(|answer| [IoSlice::new(answer)])
            .collect();
        // A send that fails (a peer gone, a full buffer) loses those answers,
        // as a lost datagram would; the client asks again.
        if let Err(error) = sendmmsg(
            fd,
            &mut send_headers,
            &slices,
            &peers,
            [],
            MsgFlags::empty(),
        ) {
            tracing::debug!("sending {} answers: {error}", peers.len());
        }
        let elapsed = received_at.elapsed();
        for (answer, &(index, len)) in answers.iter().zip(&asked) {
            metrics.count_answer(&buffers[index][..len], answer, elapsed);
        }
    }
}

/// A query for a function pool that is starting: answered once an
/// instance is ready or the pool's deadline has passed, whichever is first,
/// while the socket's thread goes on with other queries.
async fn answer_when_ready(
    cold: Arc<ColdStart>,
    query: Vec<u8>,
    client: IpAddr,
    to: SocketAddr,
    (socket, responder, metrics): (Arc<UdpSocket>, Arc<Responder>, Arc<Metrics>),
) {
    let received = Instant::now();
    cold.wake();
    cold.ready_within(cold.deadline).await;
    if let Some(answer) = responder.respond(&query, client, Transport::Udp) {
        if let Err(error) = socket.send_to(&answer, to) {
            tracing::debug!("sending a held answer to {to}: {error}");
        }
        metrics.count_answer(&query, &answer, received.elapsed());
    }
}

fn socket_addr(peer: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = peer.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    let v6 = peer.as_sockaddr_in6()?;
    Some(SocketAddr::from((v6.ip(), v6.port())))
}

/// The address a datagram came from; IPv4 clients of a dual-stack socket
/// arrive mapped, and policies see them as IPv4.
fn peer_ip(peer: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = peer.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    let v6 = peer.as_sockaddr_in6()?.ip();
    Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
}

fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    if listen.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_thread_that_fails_or_panics_serves_again() {
        let restarts = IntCounter::new("restarts", "restarts").unwrap();
        let counted = restarts.clone();
        let (served, runs) = mpsc::channel();
        thread::spawn(move || {
            let mut run = 0;
            keep_serving("test socket", &counted, move || {
                run += 1;
                let _ = served.send(run);
                match run {
                    1 => Err(io::Error::other("the socket failed")),
                    2 => panic!("a bug"),
                    // Serving, for good.
                    _ => loop {
                        thread::park();
                    },
                }
            })
        });
        let third = runs.iter().nth(2);
        assert_eq!(third, Some(3), "run again after a failure and a panic");
        assert_eq!(restarts.get(), 2);
    }
}
