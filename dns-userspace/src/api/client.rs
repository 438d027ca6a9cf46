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
    #[error(
        "cannot reach the daemon at {at}: {source} (is `dnslb run` running, and is this its --socket?)"
    )]
    Connect { at: String, source: std::io::Error },
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
        let response = match &self.target {
            Target::Unix(path) => {
                let stream =
                    UnixStream::connect(path)
                        .await
                        .map_err(|source| ClientError::Connect {
                            at: path.display().to_string(),
                            source,
                        })?;
                send(stream, request).await?
            }
            Target::Tcp { addr, .. } => {
                let stream =
                    TcpStream::connect(addr)
                        .await
                        .map_err(|source| ClientError::Connect {
                            at: addr.clone(),
                            source,
                        })?;
                send(stream, request).await?
            }
        };
        let (status, bytes) = response;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|error| error.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Refused { status, message });
        }
        Ok(serde_json::from_slice(&bytes)?)
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
