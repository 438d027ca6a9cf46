//! The CLI's side of the control API: one HTTP/1.1 request per connection,
//! to the daemon's unix socket or, with a token, its TCP address.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::{TcpStream, UnixStream};

use super::types::ApiError;

/// Where the daemon's control API is.
#[derive(Clone, Debug)]
pub enum Target {
    Unix(PathBuf),
    /// `host:port`, and the bearer token.
    Tcp {
        addr: String,
        token: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The OS's error is in the message (once), not a source, so that a
    /// report of the whole chain does not print it twice.
    #[error("cannot reach the daemon at {at}: {}", connect_hint(.io))]
    Connect { at: String, io: std::io::Error },
    /// Something answered, but not as the control API does.
    #[error(
        "{at} does not answer as dnslb's control API does ({what}): is it the daemon's --socket, or its --control-listen address?"
    )]
    NotTheApi { at: String, what: String },
    #[error("talking to the daemon: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    #[error("the daemon's answer is not what this dnslb expects (another version?): {0}")]
    Decode(#[from] serde_json::Error),
}

#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
}

impl Client {
    pub fn new(target: Target) -> Client {
        Client { target }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, body).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, path, None::<&()>).await
    }

    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body)?),
            None => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "dnslb")
            .header(CONTENT_TYPE, "application/json");
        if let Target::Tcp { token, .. } = &self.target {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body))?;
        let at = match &self.target {
            Target::Unix(path) => path.display().to_string(),
            Target::Tcp { addr, .. } => addr.clone(),
        };
        let connect = |io| ClientError::Connect { at: at.clone(), io };
        let response = match &self.target {
            Target::Unix(path) => {
                send(UnixStream::connect(path).await.map_err(connect)?, request).await
            }
            Target::Tcp { addr, .. } => {
                send(TcpStream::connect(addr).await.map_err(connect)?, request).await
            }
        };
        let (status, bytes) = response.map_err(|error| match error {
            ClientError::Http(http) if http.is_parse() || http.is_incomplete_message() => {
                ClientError::NotTheApi {
                    at: at.clone(),
                    what: http.to_string(),
                }
            }
            other => other,
        })?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(error) => ClientError::Refused {
                    status,
                    message: error.error,
                },
                Err(_) => ClientError::NotTheApi {
                    at,
                    what: format!("HTTP {status} without the API's error"),
                },
            });
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// What a failed connection most likely means, for the operator.
fn connect_hint(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match error.kind() {
        ErrorKind::PermissionDenied => {
            "this user may not open the control socket (it is the daemon's user's, mode 0600): run as that user or root"
        }
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            "nothing listens there: is `dnslb run` running, and is this its --socket (or --control-listen)?"
        }
        _ => "",
    };
    // The OS's own words once, then the hint.
    let os = error.to_string();
    if hint.is_empty() {
        os
    } else {
        format!("{os}; {hint}")
    }
}

async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driving = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driving.await;
    Ok((status, bytes))
}
