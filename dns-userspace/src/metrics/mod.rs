//! Prometheus metrics: counters kept here, kernel counters read on scrape,
//! and a small HTTP endpoint serving `/metrics` in the text format.

use std::{
    fmt::Write as _,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dns_common::Counter;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

use crate::dataplane::KernelCounters;

/// Counters of the daemon itself.
#[derive(Debug, Default)]
pub struct Metrics {
    userspace_queries: AtomicU64,
}

impl Metrics {
    pub fn count_userspace_query(&self) {
        self.count_userspace_queries(1);
    }

    pub fn count_userspace_queries(&self, queries: u64) {
        self.userspace_queries.fetch_add(queries, Ordering::Relaxed);
    }

    pub fn userspace_queries(&self) -> u64 {
        self.userspace_queries.load(Ordering::Relaxed)
    }

    /// The exposition text, with the kernel's counters when XDP is in use.
    pub fn render(&self, kernel: Option<KernelCounters>) -> String {
        let mut out = String::new();
        out.push_str("# HELP dnslb_queries_total DNS queries answered or handled, by where.\n");
        out.push_str("# TYPE dnslb_queries_total counter\n");
        if let Some(kernel) = &kernel {
            let _ = writeln!(
                out,
                "dnslb_queries_total{{path=\"xdp\"}} {}",
                kernel.get(Counter::Answered)
            );
        }
        let _ = writeln!(
            out,
            "dnslb_queries_total{{path=\"userspace\"}} {}",
            self.userspace_queries()
        );
        if let Some(kernel) = &kernel {
            out.push_str("# HELP dnslb_xdp_packets_total Packets the XDP program saw.\n");
            out.push_str("# TYPE dnslb_xdp_packets_total counter\n");
            let _ = writeln!(out, "dnslb_xdp_packets_total {}", kernel.seen());
            out.push_str("# HELP dnslb_xdp_passed_total Packets the XDP program passed to the kernel stack, by reason.\n");
            out.push_str("# TYPE dnslb_xdp_passed_total counter\n");
            for counter in Counter::ALL {
                if let Some(reason) = counter.pass_reason() {
                    let _ = writeln!(
                        out,
                        "dnslb_xdp_passed_total{{reason=\"{reason}\"}} {}",
                        kernel.get(counter)
                    );
                }
            }
        }
        out
    }
}

/// Where a scrape gets the kernel's counters from, if anywhere.
pub type KernelSource = Arc<dyn Fn() -> Option<KernelCounters> + Send + Sync>;

/// Appends metrics kept elsewhere (routing policies, health checks).
pub type ExtraSource = Arc<dyn Fn(&mut String) + Send + Sync>;

/// Serves `GET /metrics` on `listen`.
pub async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    kernel: KernelSource,
    extra: ExtraSource,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tasks.spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await?;
            let (metrics, kernel, extra) = (metrics.clone(), kernel.clone(), extra.clone());
            tokio::spawn(async move {
                if let Err(error) = answer_scrape(stream, &metrics, &kernel, &extra).await {
                    log::debug!("metrics request from {peer}: {error}");
                }
            });
        }
    });
    Ok(())
}

/// Reads one request head and answers it; scrapers open a connection per
/// scrape or tolerate `Connection: close`.
async fn answer_scrape(
    mut stream: TcpStream,
    metrics: &Metrics,
    kernel: &KernelSource,
    extra: &ExtraSource,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timed out"))??;
        if read == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = match request_line
        .split(|&b| b == b' ')
        .collect::<Vec<_>>()
        .as_slice()
    {
        [b"GET", path, ..] if path.split(|&b| b == b'?').next() == Some(b"/metrics") => {
            ("200 OK", "text/plain; version=0.0.4", {
                let mut body = metrics.render(kernel());
                extra(&mut body);
                body
            })
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_userspace_counts_without_a_kernel() {
        let metrics = Metrics::default();
        metrics.count_userspace_query();
        let text = metrics.render(None);
        assert!(
            text.contains("dnslb_queries_total{path=\"userspace\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("path=\"xdp\""), "{text}");
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = Arc::new(Metrics::default());
        metrics.count_userspace_query();
        let mut tasks = JoinSet::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let extra: ExtraSource = Arc::new(|out| out.push_str("extra_metric 7\n"));
        serve_metrics(addr, metrics, Arc::new(|| None), extra, &mut tasks)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("dnslb_queries_total{path=\"userspace\"} 1"),
            "{reply}"
        );
        assert!(reply.ends_with("extra_metric 7\n"), "{reply}");
    }
}
