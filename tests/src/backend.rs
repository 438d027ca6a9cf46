//! Things the daemon's health checks probe, and a client that watches
//! what the server answers over time.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use hickory_proto::op::Message;

use crate::{
    frame::{QueryFrame, a_records},
    netns::{Netns, enter_netns},
};

/// A policy file's `[check.web]` that probes [`HttpBackend`]s on port
/// 8080 every `interval_ms`, each probe given `timeout_ms`.
pub fn web_check(interval_ms: u64, timeout_ms: u64, rise: u64, fall: u64) -> String {
    format!(
        "[check.web]\nkind = \"http\"\npath = \"/health\"\nport = 8080\nsearch = \"OK\"\n\
         interval = \"{interval_ms}ms\"\ntimeout = \"{timeout_ms}ms\"\nrise = {rise}\nfall = {fall}\n"
    )
}

/// An HTTP server answering `200 OK` with body `OK` to every request,
/// listening in a namespace until stopped or dropped. Stopping closes the
/// socket, so a check's connection is refused from then on.
pub struct HttpBackend {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HttpBackend {
    /// Listens on `addr` in `netns`; returns once the socket is bound.
    pub fn start(netns: &Netns, addr: SocketAddr) -> anyhow::Result<HttpBackend> {
        HttpBackend::serve(netns, addr, |stream| {
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        })
    }

    /// Listens on `addr` in `netns`, handing each connection to `answer`
    /// in turn; returns once the socket is bound.
    fn serve(
        netns: &Netns,
        addr: SocketAddr,
        answer: impl Fn(&mut std::net::TcpStream) + Send + 'static,
    ) -> anyhow::Result<HttpBackend> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound, ready) = mpsc::channel();
        let name = netns.name().to_owned();
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let listener = enter_netns(&name)
                .and_then(|()| TcpListener::bind(addr).context("binding the backend"))
                .and_then(|l| l.set_nonblocking(true).map(|()| l).context("nonblocking"));
            let listener = match listener {
                Ok(listener) => {
                    let _ = bound.send(Ok(()));
                    listener
                }
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        answer(&mut stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(5))
            .context("backend thread did not start")??;
        Ok(HttpBackend {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.halt();
    }
}

/// How a [`LoadAgent`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// An HTTP server whose body is the reply.
    Http,
    /// HAProxy's agent-check: the reply as a line, then close.
    Tcp,
}

/// An endpoint's load agent, listening in a namespace until dropped, whose
/// reply the test changes at will ([`LoadAgent::say`]); an empty reply
/// makes it hang (accept, then say nothing until the client gives up).
pub struct LoadAgent {
    reply: Arc<std::sync::Mutex<String>>,
    _server: HttpBackend,
}

impl LoadAgent {
    pub fn start(
        netns: &Netns,
        addr: SocketAddr,
        kind: AgentKind,
        reply: &str,
    ) -> anyhow::Result<LoadAgent> {
        let said = Arc::new(std::sync::Mutex::new(reply.to_owned()));
        let saying = said.clone();
        let server = HttpBackend::serve(netns, addr, move |stream| {
            let reply = saying.lock().map(|r| r.clone()).unwrap_or_default();
            if reply.is_empty() {
                thread::sleep(Duration::from_secs(3));
                return;
            }
            let out = match kind {
                AgentKind::Tcp => format!("{reply}\n"),
                AgentKind::Http => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                ),
            };
            if kind == AgentKind::Http {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head);
            }
            let _ = stream.write_all(out.as_bytes());
        })?;
        Ok(LoadAgent {
            reply: said,
            _server: server,
        })
    }

    /// What the agent replies from now on.
    pub fn say(&self, reply: &str) {
        if let Ok(mut said) = self.reply.lock() {
            *said = reply.to_owned();
        }
    }
}

/// One answer seen by [`watch_answers`]: when, and its A records (`None`
/// for a query that got no answer in time).
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub addrs: Option<Vec<Ipv4Addr>>,
}

/// Asks one server for one name's A records, one query at a time.
/// Answers are read by hand: the A records of the answer section.
struct Asker {
    socket: UdpSocket,
    query: Vec<u8>,
    id: u16,
    buffer: [u8; 1500],
}

impl Asker {
    /// Call inside the client's namespace.
    fn new(server: SocketAddr, name: &str) -> anyhow::Result<Asker> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Asker {
            socket,
            query: QueryFrame::a(name).dns(),
            id: 0,
            buffer: [0; 1500],
        })
    }

    /// The A records of the next answer; `None` when none came in time.
    fn ask(&mut self) -> anyhow::Result<Option<Vec<Ipv4Addr>>> {
        self.id = self.id.wrapping_add(1);
        let id = self.id.to_be_bytes();
        self.query[..2].copy_from_slice(&id);
        self.socket.send(&self.query)?;
        loop {
            match self.socket.recv(&mut self.buffer) {
                Ok(len) if self.buffer[..2] == id => {
                    return Ok(Some(
                        Message::from_vec(&self.buffer[..len])
                            .map_or_else(|_| Vec::new(), |m| a_records(&m)),
                    ));
                }
                Ok(_) => continue,
                Err(_) => return Ok(None),
            }
        }
    }
}

/// Asks `server` for `name`'s A records from inside `netns`, one query at a
/// time with a pause of `every` between them, until `stop` is set or
/// `limit` has passed (bounded either way).
pub fn watch_answers(
    netns: &Netns,
    server: SocketAddr,
    name: &str,
    every: Duration,
    limit: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Seen>> {
    netns.run(|| -> anyhow::Result<Vec<Seen>> {
        let mut asker = Asker::new(server, name)?;
        let mut seen = Vec::new();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
            let addrs = asker.ask()?;
            seen.push(Seen {
                at: Instant::now(),
                addrs,
            });
            thread::sleep(every);
        }
        Ok(seen)
    })?
}

/// Asks `server` for `name` `queries` times from inside `netns`, one
/// query at a time, and counts the answers by their first A record
/// (`None`: no answer in time, or one without A records).
pub fn tally_answers(
    netns: &Netns,
    server: SocketAddr,
    name: &str,
    queries: usize,
) -> anyhow::Result<BTreeMap<Option<Ipv4Addr>, u64>> {
    netns.run(|| -> anyhow::Result<_> {
        let mut asker = Asker::new(server, name)?;
        let mut tally = BTreeMap::new();
        for _ in 0..queries {
            let first = asker.ask()?.and_then(|addrs| addrs.first().copied());
            *tally.entry(first).or_insert(0) += 1;
        }
        Ok(tally)
    })?
}
