//! One probe of one endpoint: pass or fail, and why it failed.

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
    sync::{Arc, OnceLock},
    time::Duration,
};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::{Probe, SEARCH_WINDOW};
use crate::shell;

/// The endpoint a probe goes to, with its per-endpoint overrides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeTarget {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub path: Option<String>,
}

/// Most header bytes read before giving up on finding the body.
const MAX_HEADER: usize = 16 * 1024;

/// Runs `probe` against `target` once. Calculated checks have no probe of
/// their own (the runner combines their children) and always fail here.
pub async fn probe(probe: &Probe, target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, run(probe, target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no result within {} ms", timeout.as_millis())),
    }
}

async fn run(probe: &Probe, target: &ProbeTarget) -> Result<(), String> {
    let at = |port: u16| SocketAddr::new(target.addr, target.port.unwrap_or(port));
    match probe {
        Probe::Tcp { port } => {
            let stream = connect(at(*port)).await?;
            abort(&stream);
            Ok(())
        }
        Probe::Http {
            tls,
            port,
            path,
            host,
            status,
            search,
        } => {
            let stream = connect(at(*port)).await?;
            let path = target.path.as_deref().unwrap_or(path);
            let host_header = host.clone().unwrap_or_else(|| target.addr.to_string());
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: dnslb-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            );
            let response = if *tls {
                let name = match host {
                    Some(host) => ServerName::try_from(host.clone())
                        .map_err(|e| format!("host `{host}`: {e}"))?,
                    None => ServerName::IpAddress(target.addr.into()),
                };
                let connector = tokio_rustls::TlsConnector::from(tls_config());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(stream, &request, search.is_some()).await?
            } else {
                exchange(stream, &request, search.is_some()).await?
            };
            judge_http(&response, status, search.as_deref())
        }
        Probe::Dns {
            port,
            query,
            qtype,
            expect,
        } => {
            let server = at(*port);
            let local: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .map_err(|_| "bad local address".to_owned())?;
            let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
            socket.connect(server).await.map_err(|e| e.to_string())?;
            let id = fastrand::u16(..);
            let mut message = Message::new(id, MessageType::Query, OpCode::Query);
            message.metadata.recursion_desired = false;
            message.add_query(Query::query(query.clone(), *qtype));
            let bytes = message.to_vec().map_err(|e| e.to_string())?;
            socket
                .send(&bytes)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut buffer = vec![0u8; 4096];
            loop {
                let len = socket
                    .recv(&mut buffer)
                    .await
                    .map_err(|e| format!("receive: {e}"))?;
                let Ok(reply) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                if reply.metadata.id == id {
                    return judge_dns(&reply, expect.as_deref());
                }
            }
        }
        Probe::Command { command } => {
            let port = target.port.map(|p| p.to_string()).unwrap_or_default();
            let vars = [
                ("DNSLB_ADDRESS", target.addr.to_string()),
                ("DNSLB_PORT", port),
            ];
            let mut child = shell::command(command, vars)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("running `sh -c`: {e}"))?;
            // Killed whole when the probe ends or times out (this future
            // is dropped): a pipeline's other processes too.
            let _group = shell::Group::of(&child);
            let status = child.wait().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("command exited with {status}"))
            }
        }
        Probe::Calculated { .. } => Err("a calculated check has no probe of its own".into()),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(stream)
}

/// Makes closing the connection send a reset: a TCP check has nothing to
/// say, and skipping the FIN exchange and TIME-WAIT saves both ends work
/// (HAProxy closes its checks the same way). HTTP checks close normally
/// once the response is read: with `Connection: close` the server's FIN
/// usually comes with it, and the close is then a passive one.
fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Sends `request`, reads the response head and, when a search is asked
/// for, the first [`SEARCH_WINDOW`] bytes of the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    want_body: bool,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::with_capacity(if want_body { 8192 } else { 1024 });
    loop {
        let enough = match head_end(&response) {
            Some(end) => !want_body || response.len() >= end + SEARCH_WINDOW,
            None => response.len() > MAX_HEADER,
        };
        if enough {
            break;
        }
        response.reserve(1024);
        let read = stream
            .read_buf(&mut response)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if read == 0 {
            break;
        }
    }
    Ok(response)
}

fn head_end(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Passes when the status is in range and, with a search string, the body's
/// first 5,120 bytes contain it.
pub fn judge_http(
    response: &[u8],
    status: &std::ops::RangeInclusive<u16>,
    search: Option<&str>,
) -> Result<(), String> {
    let end = head_end(response).ok_or("no complete HTTP response head")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .filter(|_| head.starts_with("HTTP/"))
        .and_then(|code| code.parse().ok())
        .ok_or("not an HTTP response")?;
    if !status.contains(&code) {
        return Err(format!("status {code}"));
    }
    if let Some(search) = search {
        let body = &response[end..response.len().min(end + SEARCH_WINDOW)];
        let found = body
            .windows(search.len().max(1))
            .any(|window| window == search.as_bytes());
        if !found {
            return Err(format!("`{search}` not in the first {SEARCH_WINDOW} bytes"));
        }
    }
    Ok(())
}

fn judge_dns(reply: &Message, expect: Option<&str>) -> Result<(), String> {
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(format!("rcode {}", reply.metadata.response_code));
    }
    if reply.answers.is_empty() {
        return Err("no answer records".into());
    }
    match expect {
        Some(expect)
            if !reply
                .answers
                .iter()
                .any(|r| r.data.to_string().contains(expect)) =>
        {
            Err(format!("no answer shows `{expect}`"))
        }
        _ => Ok(()),
    }
}

/// TLS for HTTPS checks. Like Route 53, the check does not validate the
/// endpoint's certificate (endpoints are addressed by IP and often carry
/// internal certificates); the handshake itself is verified as usual.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = AnyCertificate(provider.signature_verification_algorithms);
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                        .with_no_client_auth()
                });
            // The ring provider supports the default versions; this cannot fail.
            Arc::new(config.unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3")))
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_range_and_search_window() {
        let ok = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";
        assert_eq!(judge_http(ok, &(200..=399), None), Ok(()));
        assert!(
            judge_http(ok, &(200..=200), None)
                .unwrap_err()
                .contains("204")
        );
        let mut body = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'.', SEARCH_WINDOW - 2));
        body.extend(b"OK");
        assert_eq!(judge_http(&body, &(200..=299), Some("OK")), Ok(()));
        body.insert(20, b'.');
        assert!(
            judge_http(&body, &(200..=299), Some("OK")).is_err(),
            "just past the window"
        );
        assert!(judge_http(b"SSH-2.0\r\n\r\n", &(200..=299), None).is_err());
        assert!(judge_http(b"HTTP/1.1 200 OK\r\n", &(200..=299), None).is_err());
    }
}
