//! Prometheus metrics, through the `prometheus` crate: the counters,
//! gauges and histogram the daemon keeps itself, registered here; families
//! read from the kernel and the health checks at scrape time by collectors
//! (`kernel`, and steering's); all served at `GET /metrics` by axum.

pub mod family;
pub mod kernel;
pub mod top;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, core::Collector,
};
use tokio::{net::TcpListener, task::JoinSet};

use crate::{http, zone::wire};

/// Record types counted by name; the rest are counted as `other`.
const NAMED_QTYPES: [(u16, &str); 16] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (43, "DS"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
    (257, "CAA"),
    (252, "AXFR"),
];

/// RCODE names (RFC 1035, 2136, 6895) for the 4-bit header field.
const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];

/// How the daemon's changes went: SIGHUP and control API alike.
pub struct ChangeMetrics {
    pub applied: IntCounter,
    pub refused: IntCounter,
    /// Unix time of the last applied change.
    pub last_applied: Gauge,
}

impl ChangeMetrics {
    pub fn count_applied(&self) {
        self.applied.inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        self.last_applied.set(now);
    }
}

/// What the daemon counts of its own that the kernel collector reports in
/// the same families as the kernel's counts.
#[derive(Debug, Default)]
pub struct UserspaceCounts {
    /// Queries the daemon received (UDP and TCP).
    pub queries: AtomicU64,
    /// UDP answers the rate limit sent truncated, and dropped.
    pub rate_slipped: AtomicU64,
    pub rate_dropped: AtomicU64,
}

/// The daemon's own metrics, and the registry every family is in.
pub struct Metrics {
    registry: Registry,
    /// Shared with the kernel collector.
    userspace: Arc<UserspaceCounts>,
    /// The names most asked of the daemon lately.
    pub top_names: top::TopNames,
    rcodes: Vec<IntCounter>,
    qtypes: Vec<(u16, IntCounter)>,
    other_qtype: IntCounter,
    answer_seconds: Histogram,
    pub tcp_open: IntGauge,
    pub tcp_refused: IntCounter,
    pub udp_receive_errors: IntCounter,
    /// Failed `accept`s, by server.
    accept_errors: IntCounterVec,
    /// Zone transfers and NOTIFY, by kind, direction and result.
    pub zone_transfers: IntCounterVec,
    /// UDP threads started again after they failed.
    pub udp_restarts: IntCounter,
    pub tcp_receive_errors: IntCounter,
    pub changes: ChangeMetrics,
}

/// Registers `metric` in `registry` and returns it. Names are constants, so
/// failing here is a programming error, caught by the tests.
pub fn registered<T: Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    if let Err(error) = registry.register(Box::new(metric.clone())) {
        tracing::error!("registering a metric: {error}");
    }
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let rcode_vec = registered(
            r,
            IntCounterVec::new(
                Opts::new(
                    "dnslb_userspace_answers_total",
                    "Answers the daemon sent, by RCODE.",
                ),
                &["rcode"],
            )
            .expect("valid metric"),
        );
        let qtype_vec = registered(
            r,
            IntCounterVec::new(
                Opts::new(
                    "dnslb_userspace_queries_by_type_total",
                    "Queries the daemon answered, by QTYPE.",
                ),
                &["qtype"],
            )
            .expect("valid metric"),
        );
        let errors = registered(
            r,
            IntCounterVec::new(
                Opts::new(
                    "dnslb_receive_errors_total",
                    "Errors receiving queries, by transport.",
                ),
                &["transport"],
            )
            .expect("valid metric"),
        );
        let build = registered(
            r,
            IntGaugeVec::new(
                Opts::new("dnslb_build_info", "1, labelled with the running version."),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let reloads = registered(
            r,
            IntCounterVec::new(
                Opts::new(
                    "dnslb_reloads_total",
                    "Configuration changes (SIGHUP, control API), applied or refused.",
                ),
                &["result"],
            )
            .expect("valid metric"),
        );
        Metrics {
            userspace: Arc::new(UserspaceCounts::default()),
            top_names: top::TopNames::default(),
            rcodes: RCODES
                .iter()
                .map(|name| rcode_vec.with_label_values(&[name]))
                .collect(),
            qtypes: NAMED_QTYPES
                .iter()
                .map(|(code, name)| (*code, qtype_vec.with_label_values(&[name])))
                .collect(),
            other_qtype: qtype_vec.with_label_values(&["other"]),
            answer_seconds: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "dnslb_userspace_answer_seconds",
                        "Time from receiving a query to sending its answer, in the daemon.",
                    )
                    .buckets(prometheus::exponential_buckets(5e-6, 2.0, 14).unwrap_or_default()),
                )
                .expect("valid metric"),
            ),
            tcp_open: registered(
                r,
                IntGauge::new(
                    "dnslb_tcp_connections_open",
                    "DNS over TCP connections open.",
                )
                .expect("valid metric"),
            ),
            tcp_refused: registered(
                r,
                IntCounter::new(
                    "dnslb_tcp_connections_refused_total",
                    "DNS over TCP connections closed at once: too many from one address, or every slot busy.",
                )
                .expect("valid metric"),
            ),
            udp_receive_errors: errors.with_label_values(&["udp"]),
            accept_errors: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "dnslb_accept_errors_total",
                        "Failed accepts of a connection (out of descriptors, say), by server; each is retried after a pause.",
                    ),
                    &["server"],
                )
                .expect("valid metric"),
            ),
            zone_transfers: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "dnslb_zone_transfers_total",
                        "Zone transfers and NOTIFY messages: kind (axfr, ixfr, notify), direction (in: to this node's secondary zones or from others' primaries; out: from this node's zones) and result.",
                    ),
                    &["kind", "direction", "result"],
                )
                .expect("valid metric"),
            ),
            udp_restarts: registered(
                r,
                IntCounter::new(
                    "dnslb_udp_thread_restarts_total",
                    "UDP threads started again on their socket after they failed.",
                )
                .expect("valid metric"),
            ),
            tcp_receive_errors: errors.with_label_values(&["tcp"]),
            changes: ChangeMetrics {
                applied: reloads.with_label_values(&["applied"]),
                refused: reloads.with_label_values(&["refused"]),
                last_applied: registered(
                    r,
                    Gauge::new(
                        "dnslb_last_reload_success_timestamp_seconds",
                        "Unix time of the last applied configuration change.",
                    )
                    .expect("valid metric"),
                ),
            },
            registry,
        }
    }

    /// Adds a collector read at scrape time (the kernel's, steering's).
    /// The registry, for a part of the daemon that keeps families of its own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A gauge registered under `name` (a constant: an invalid one is a
    /// programming error, caught by the tests).
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        registered(
            &self.registry,
            IntGauge::new(name, help).expect("valid metric"),
        )
    }

    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(error) = self.registry.register(collector) {
            tracing::error!("registering metrics: {error}");
        }
    }

    /// The counter of failed accepts of `server` (`dns`, `metrics`,
    /// `control`).
    pub fn accept_errors(&self, server: &str) -> IntCounter {
        self.accept_errors.with_label_values(&[server])
    }

    /// The daemon's counts the kernel collector reports.
    pub fn userspace_counts(&self) -> Arc<UserspaceCounts> {
        self.userspace.clone()
    }

    pub fn count_userspace_query(&self) {
        self.count_userspace_queries(1);
    }

    pub fn count_userspace_queries(&self, queries: u64) {
        self.userspace.queries.fetch_add(queries, Ordering::Relaxed);
    }

    pub fn userspace_queries(&self) -> u64 {
        self.userspace.queries.load(Ordering::Relaxed)
    }

    /// Counts a UDP answer the rate limit slipped (sent truncated) or
    /// dropped.
    pub fn count_rate_limited(&self, slipped: bool) {
        let counter = match slipped {
            true => &self.userspace.rate_slipped,
            false => &self.userspace.rate_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answer the daemon sent: its RCODE, the query's type, and
    /// the time since the query was received.
    pub fn count_answer(&self, query: &[u8], answer: &[u8], elapsed: Duration) {
        if let Some(flags) = answer.get(3) {
            self.rcodes[usize::from(flags & 0x0f)].inc();
        }
        let mut name = [0u8; 255];
        let qtype = query
            .get(12..)
            .and_then(|question| wire::read_lowercase(question, &mut name))
            .and_then(|len| query.get(12 + len..14 + len))
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]));
        match qtype.and_then(|qtype| self.qtypes.iter().find(|(code, _)| *code == qtype)) {
            Some((_, counter)) => counter.inc(),
            None => self.other_qtype.inc(),
        }
        self.answer_seconds.observe(elapsed.as_secs_f64());
    }

    /// The exposition text of every family.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding the metrics failed: {error}\n"))
    }
}

/// Connections the metrics endpoint serves at once, and how long each may
/// take: scrapers are few and quick.
const LIMITS: http::Limits = http::Limits {
    connections: 32,
    deadline: Duration::from_secs(10),
};

/// Serves `GET /metrics` on `listen`.
pub async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    tasks: &mut JoinSet<std::io::Result<()>>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let accept_errors = metrics.accept_errors("metrics");
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    let listener = http::Listener::Tcp(listener);
    http::serve("metrics", listener, router, LIMITS, accept_errors, tasks);
    Ok(())
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    // Collectors lock the kernel maps and the steering state: off the
    // async threads.
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            error.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(qtype: u16) -> Vec<u8> {
        let mut message = vec![0u8; 12];
        message.extend_from_slice(b"\x03www\x07example\x00");
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&[0, 1]);
        message
    }

    #[test]
    fn counts_answers_by_rcode_qtype_and_time() {
        let metrics = Metrics::new();
        metrics.count_userspace_query();
        let mut nxdomain = query(28);
        nxdomain[2] = 0x84;
        nxdomain[3] = 0x03;
        metrics.count_answer(&query(28), &nxdomain, Duration::from_micros(40));
        metrics.count_answer(&query(99), &query(99), Duration::from_micros(40));
        let text = metrics.render();
        for line in [
            "dnslb_userspace_answers_total{rcode=\"NXDOMAIN\"} 1",
            "dnslb_userspace_answers_total{rcode=\"NOERROR\"} 1",
            "dnslb_userspace_queries_by_type_total{qtype=\"AAAA\"} 1",
            "dnslb_userspace_queries_by_type_total{qtype=\"other\"} 1",
            "dnslb_userspace_answer_seconds_count 2",
            "dnslb_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = Arc::new(Metrics::new());
        metrics.changes.count_applied();
        let mut tasks = JoinSet::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        serve_metrics(addr, metrics, &mut tasks).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("dnslb_reloads_total{result=\"applied\"} 1"),
            "{reply}"
        );
    }
}
