//! Every check kind against real servers on loopback.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::rr::{Name, RecordType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

use super::*;
use crate::{
    policy::{Health, Pool, PoolEndpoint},
    server::{Responder, Transport},
    zone::{Catalog, parse_zone},
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TIMEOUT: Duration = Duration::from_millis(500);

fn target(port: u16) -> ProbeTarget {
    ProbeTarget {
        addr: LOCAL,
        port: Some(port),
        path: None,
    }
}

fn http(tls: bool, status: std::ops::RangeInclusive<u16>, search: Option<&str>) -> Probe {
    Probe::Http {
        tls,
        port: 1,
        path: "/healthz".into(),
        host: Some("www.example.com".into()),
        status,
        search: search.map(str::to_owned),
    }
}

/// An HTTP server that answers 200 with `body` to `GET /healthz` carrying
/// `Host: www.example.com`, 404 to other paths and 400 without that host.
/// With `tls`, behind a self-signed certificate made by openssl.
async fn web_server(body: &'static str, tls: bool) -> u16 {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.then(tls_acceptor);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_http(stream, body).await;
                        }
                    }
                    None => serve_http(stream, body).await,
                }
            });
        }
    });
    port
}

async fn serve_http<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    body: &str,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status = if !head.contains("host: www.example.com\r\n") {
        "400 Bad Request"
    } else if head.starts_with("get /healthz ") {
        "200 OK"
    } else {
        "404 Not Found"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let dir = std::env::temp_dir().join(format!("dnslb-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=www.example.com",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed (cargo xtask setup)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn http_checks_status_path_host_and_body() {
    let port = web_server("service is OK", false).await;
    let at = target(port);
    assert_eq!(
        probe(&http(false, 200..=299, None), &at, TIMEOUT).await,
        Ok(())
    );
    assert_eq!(
        probe(&http(false, 200..=299, Some("is OK")), &at, TIMEOUT).await,
        Ok(())
    );
    let missing = probe(&http(false, 200..=299, Some("degraded")), &at, TIMEOUT).await;
    assert!(missing.unwrap_err().contains("degraded"));
    let narrow = probe(&http(false, 300..=399, None), &at, TIMEOUT).await;
    assert!(narrow.unwrap_err().contains("status 200"));
    // The endpoint's own path overrides the check's.
    let other_path = ProbeTarget {
        path: Some("/other".into()),
        ..at.clone()
    };
    let wrong = probe(&http(false, 200..=299, None), &other_path, TIMEOUT).await;
    assert!(wrong.unwrap_err().contains("404"));
    // Without the Host header the server refuses.
    let no_host = Probe::Http {
        tls: false,
        port,
        path: "/healthz".into(),
        host: None,
        status: 200..=299,
        search: None,
    };
    assert!(
        probe(&no_host, &ProbeTarget { port: None, ..at }, TIMEOUT)
            .await
            .unwrap_err()
            .contains("400")
    );
}

#[tokio::test]
async fn https_checks_run_over_tls_without_validating_the_certificate() {
    let port = web_server("TLS OK", true).await;
    assert_eq!(
        probe(
            &http(true, 200..=299, Some("TLS OK")),
            &target(port),
            TIMEOUT
        )
        .await,
        Ok(())
    );
    // Plain HTTP to a TLS port gets no HTTP response.
    assert!(
        probe(&http(false, 200..=299, None), &target(port), TIMEOUT)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tcp_checks_pass_on_accept_and_fail_on_refusal_or_timeout() {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        probe(&Probe::Tcp { port }, &target(port), TIMEOUT).await,
        Ok(())
    );
    drop(listener);
    let refused = probe(&Probe::Tcp { port }, &target(port), TIMEOUT).await;
    assert!(refused.unwrap_err().contains("connect"));

    // A server that accepts and never answers fails an HTTP check by timeout.
    let silent = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let result = probe(
        &http(false, 200..=299, None),
        &target(port),
        Duration::from_millis(200),
    )
    .await;
    assert!(result.unwrap_err().contains("within 200 ms"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn dns_checks_ask_a_real_server_and_match_the_answer() {
    let zone = parse_zone(
        &Name::from_ascii("example.net.").unwrap(),
        "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.53\nhealth A 192.0.2.1\n",
        Path::new("health.zone"),
    )
    .unwrap();
    let mut catalog = Catalog::default();
    catalog.insert(zone);
    let responder = Responder::new(catalog, 1232);
    let socket = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            if let Some(answer) = responder.respond(&buffer[..len], peer.ip(), Transport::Udp) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    let dns = |name: &str, expect: Option<&str>| Probe::Dns {
        port,
        query: Name::from_ascii(name).unwrap(),
        qtype: RecordType::A,
        expect: expect.map(str::to_owned),
    };
    let at = target(port);
    assert_eq!(
        probe(&dns("health.example.net.", Some("192.0.2.1")), &at, TIMEOUT).await,
        Ok(())
    );
    let mismatch = probe(&dns("health.example.net.", Some("192.0.2.9")), &at, TIMEOUT).await;
    assert!(mismatch.unwrap_err().contains("192.0.2.9"));
    let nxdomain = probe(&dns("gone.example.net.", None), &at, TIMEOUT).await;
    let nxdomain = nxdomain.unwrap_err();
    assert!(nxdomain.contains("rcode"), "{nxdomain}");
    let refused = probe(&dns("health.example.org.", None), &at, TIMEOUT).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn command_checks_use_the_exit_status_and_see_the_endpoint() {
    let command = |text: &str| Probe::Command {
        command: text.into(),
    };
    let at = target(8080);
    let sees = command("test \"$DNSLB_ADDRESS:$DNSLB_PORT\" = 127.0.0.1:8080");
    assert_eq!(probe(&sees, &at, TIMEOUT).await, Ok(()));
    assert!(
        probe(&command("exit 3"), &at, TIMEOUT)
            .await
            .unwrap_err()
            .contains("3")
    );
    let slow = probe(&command("sleep 5"), &at, Duration::from_millis(100)).await;
    assert!(slow.is_err());
}

/// A TCP listener on a port that can be closed and opened again.
struct Switchable {
    addr: SocketAddr,
    listener: Option<std::net::TcpListener>,
}

impl Switchable {
    fn new() -> Switchable {
        let listener = std::net::TcpListener::bind((LOCAL, 0)).unwrap();
        Switchable {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
        }
    }

    fn set(&mut self, open: bool) {
        self.listener = open.then(|| std::net::TcpListener::bind(self.addr).unwrap());
    }
}

fn check(name: &str, probe: Probe, invert: bool) -> CheckDef {
    CheckDef {
        name: name.into(),
        probe,
        interval: Duration::from_millis(40),
        timeout: Duration::from_millis(40),
        rise: 2,
        fall: 3,
        invert,
        initial: Initial::Probe,
        verdict: VerdictScope::Local,
    }
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("a verdict within 3 s")
        .expect("the runner is alive")
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_turns_probes_into_verdicts_with_rise_fall_invert_and_calculated() {
    let mut server = Switchable::new();
    let port = server.addr.port();
    let checks = vec![
        check("tcp", Probe::Tcp { port }, false),
        check("closed", Probe::Tcp { port: 1 }, true),
        check(
            "both",
            Probe::Calculated {
                children: vec![0, 1],
                min_healthy: 2,
            },
            false,
        ),
    ];
    let pools = vec![Pool {
        name: "p".into(),
        endpoints: vec![PoolEndpoint::new(LOCAL)],
        check: Some(2),
    }];
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let runner = HealthRunner::start(&checks, &pools, None, sender).unwrap();
    assert_eq!(
        runner.instances().len(),
        2,
        "a calculated check runs its children"
    );
    // Let a few passing rounds go by: still up, and no event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(runner.is_up(0, 0));
    assert!(events.try_recv().is_err());

    // Rise and fall count results, so the counters say whether the verdict
    // waited for them (timing it instead is off by the timer wheel's 1 ms).
    let tcp = |runner: &HealthRunner| {
        let instance = runner
            .instances()
            .iter()
            .find(|i| i.check == "tcp")
            .unwrap();
        let state = &instance.state;
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        (load(&state.probes), load(&state.failures))
    };
    let (_, failed_before) = tcp(&runner);
    server.set(false);
    assert_eq!(
        next_event(&mut events).await,
        HealthEvent {
            pool: 0,
            endpoint: 0,
            addr: LOCAL,
            up: false
        }
    );
    let (probes_down, failed_down) = tcp(&runner);
    assert!(
        failed_down - failed_before >= 3,
        "fall = 3 needs three failures, saw {}",
        failed_down - failed_before
    );
    assert!(!runner.is_up(0, 0));

    server.set(true);
    assert_eq!(
        next_event(&mut events).await,
        HealthEvent {
            pool: 0,
            endpoint: 0,
            addr: LOCAL,
            up: true
        }
    );
    let (probes_up, failed_up) = tcp(&runner);
    let passed = (probes_up - failed_up) - (probes_down - failed_down);
    assert!(passed >= 2, "rise = 2 needs two passes, saw {passed}");

    let up = |name: &str| {
        let instance = runner.instances().iter().find(|i| i.check == name).unwrap();
        (
            instance.state.up.load(std::sync::atomic::Ordering::Relaxed),
            instance
                .state
                .transitions
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    assert_eq!(up("tcp"), (true, 2));
    assert_eq!(
        up("closed"),
        (true, 0),
        "inverted: a refused port is healthy"
    );

    // A reload keeps verdicts: a new runner starts with the endpoint down.
    server.set(false);
    next_event(&mut events).await;
    let (sender, _events) = tokio::sync::mpsc::unbounded_channel();
    let reloaded = HealthRunner::start(&checks, &pools, Some(&runner), sender).unwrap();
    assert!(!reloaded.is_up(0, 0));
}
