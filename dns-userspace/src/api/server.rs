//! Serving the control API with axum: on a unix socket (mode 0600, its
//! directory made if missing), where the file mode is the access rule, and
//! optionally on TCP, where every request must carry the bearer token.

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::{
    net::{TcpListener, UnixListener},
    task::JoinSet,
};

use crate::http;

use super::{
    Answer, ControlPlane, Refusal, RefusalKind,
    types::{
        AnycastChange, ApiError, EndpointRef, KeyRoll, LoadReport, PolicyEdit, Registration,
        WeightChange, ZoneLoad,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "control socket {path} is in use: another dnslb runs with it (give this one --control-socket)"
    )]
    InUse { path: PathBuf },
    #[error("control API on {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("token file {path}: {problem}")]
    Token { path: PathBuf, problem: String },
}

/// The routes, answering from `plane`.
pub fn router(plane: Arc<dyn ControlPlane>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/zones", get(zones))
        .route("/v1/dnssec", get(dnssec))
        .route("/v1/dnssec/{origin}/roll", post(roll_key))
        .route(
            "/v1/zones/{origin}",
            get(zone).put(load_zone).delete(remove_zone),
        )
        .route("/v1/zones/{origin}/reload", post(reload_zone))
        .route("/v1/zones/{origin}/release", post(release_zone))
        .route("/v1/reload", post(reload))
        .route("/v1/services", get(services))
        .route("/v1/services/{label}", get(service))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/endpoints/drain", post(drain))
        .route("/v1/endpoints/undrain", post(undrain))
        .route("/v1/endpoints/weight", post(weight))
        .route("/v1/endpoints/weight/clear", post(clear_weight))
        .route("/v1/pools/{pool}/instances", post(register))
        .route(
            "/v1/pools/{pool}/instances/{address}",
            axum::routing::delete(deregister),
        )
        .route(
            "/v1/pools/{pool}/instances/{address}/heartbeat",
            post(heartbeat),
        )
        .route("/v1/pools/{pool}/endpoints/{address}/load", post(push_load))
        .route("/v1/health", get(health))
        .route("/v1/stats", get(stats))
        .route("/v1/simulate", get(simulate))
        .route("/v1/zones/{origin}/records", get(zone_records))
        .route("/v1/policy", get(policy).put(apply_policy))
        .route("/v1/policy/check", post(check_policy))
        .route("/v1/events", get(events))
        .route("/v1/anycast", post(anycast))
        .with_state(plane)
}

/// Connections the control API serves at once, and how long each may
/// take (a zone of millions of names is uploaded within it).
const LIMITS: http::Limits = http::Limits {
    connections: 64,
    deadline: Duration::from_secs(60),
};

/// The control API's listeners, bound at start, while the daemon still has
/// the rights to (`--user` comes later), and served once it has its state.
pub struct ControlListeners {
    unix: UnixListener,
    /// With `--control-listen` and `--console`: the TCP listeners, on each
    /// of which the API needs the token and the console is served.
    tcp: Vec<TcpListener>,
    token: Option<String>,
}

/// Where the control API is served over TCP, and the bearer token file.
pub struct TcpControl<'a> {
    pub addrs: Vec<SocketAddr>,
    pub token_file: &'a Path,
}

impl ControlListeners {
    /// Binds the unix socket at `path` and, if given, TCP on each address
    /// with the token in the token file (read now: it may be root's alone).
    pub async fn bind(
        path: &Path,
        tcp: Option<TcpControl<'_>>,
    ) -> Result<ControlListeners, ServeError> {
        let unix = bind_unix(path)?;
        let mut listeners = Vec::new();
        let mut token = None;
        if let Some(tcp) = tcp {
            token = Some(read_token(tcp.token_file)?);
            for addr in tcp.addrs {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Tcp { addr, source })?;
                listeners.push(listener);
            }
        }
        Ok(ControlListeners {
            unix,
            tcp: listeners,
            token,
        })
    }

    /// Serves `router` on every listener. On TCP every API request must
    /// carry `Authorization: Bearer` and the token (401 otherwise), and
    /// the web console is served beside it.
    pub fn serve(
        self,
        router: Router,
        accept_errors: &IntCounter,
        tasks: &mut JoinSet<std::io::Result<()>>,
    ) {
        if let Some(token) = self.token {
            let guarded = router.clone().layer(middleware::from_fn_with_state(
                Arc::new(token),
                require_token,
            ));
            let with_console = crate::console::router().merge(guarded);
            for listener in self.tcp {
                http::serve(
                    "control API",
                    http::Listener::Tcp(listener),
                    with_console.clone(),
                    LIMITS,
                    accept_errors.clone(),
                    tasks,
                );
            }
        }
        let listener = http::Listener::Unix(self.unix);
        http::serve(
            "control API",
            listener,
            router,
            LIMITS,
            accept_errors.clone(),
            tasks,
        );
    }
}

/// Binds the unix socket at `path`: the directory is made if missing, a
/// stale socket replaced, and the socket left readable and writable by its
/// owner only.
fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let failed = |source| ServeError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    if path.exists() {
        // A socket someone answers on belongs to a running daemon; one
        // nobody answers on is left from a daemon that died.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(failed)?;
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

/// The token: the file's first line, which must not be empty.
pub fn read_token(path: &Path) -> Result<String, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|error| ServeError::Token {
        path: path.to_owned(),
        problem: error.to_string(),
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(ServeError::Token {
            path: path.to_owned(),
            problem: "line 1: no token".to_owned(),
        });
    }
    Ok(token)
}

async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let refused = match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => return next.run(request).await,
        Some(_) => "the bearer token was refused: it is not the daemon's (--control-token-file)",
        None => "a bearer token is required (Authorization: Bearer TOKEN)",
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(ApiError {
            error: refused.to_owned(),
        }),
    )
        .into_response()
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

type Plane = State<Arc<dyn ControlPlane>>;

/// Runs a blocking control call off the async threads and turns its
/// answer into a response.
async fn call<T: Serialize + Send + 'static>(
    plane: Arc<dyn ControlPlane>,
    f: impl FnOnce(&dyn ControlPlane) -> Answer<T> + Send + 'static,
) -> Response {
    let answer = tokio::task::spawn_blocking(move || f(plane.as_ref()))
        .await
        .unwrap_or_else(|error| Err(Refusal::new(RefusalKind::Failed, error)));
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => {
            let status = match refusal.kind {
                RefusalKind::Invalid => StatusCode::BAD_REQUEST,
                RefusalKind::NotFound => StatusCode::NOT_FOUND,
                RefusalKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (
                status,
                Json(ApiError {
                    error: refusal.message,
                }),
            )
                .into_response()
        }
    }
}

async fn status(State(plane): Plane) -> Response {
    call(plane, |p| p.status()).await
}

async fn zones(State(plane): Plane) -> Response {
    call(plane, |p| p.zones()).await
}

async fn dnssec(State(plane): Plane) -> Response {
    call(plane, |p| p.dnssec()).await
}

async fn roll_key(
    State(plane): Plane,
    UrlPath(origin): UrlPath<String>,
    Json(roll): Json<KeyRoll>,
) -> Response {
    call(plane, move |p| p.roll_key(&origin, roll.key)).await
}

async fn zone(State(plane): Plane, UrlPath(origin): UrlPath<String>) -> Response {
    call(plane, move |p| {
        let wanted = fqdn(&origin);
        p.zones()?
            .into_iter()
            .find(|zone| zone.origin.eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::NotFound,
                    format!("no zone {wanted} is being served"),
                )
            })
    })
    .await
}

/// `origin` with its final dot, as zones are listed.
fn fqdn(origin: &str) -> String {
    if origin.ends_with('.') {
        origin.to_owned()
    } else {
        format!("{origin}.")
    }
}

async fn load_zone(
    State(plane): Plane,
    UrlPath(origin): UrlPath<String>,
    Json(body): Json<ZoneLoad>,
) -> Response {
    call(plane, move |p| p.load_zone(&origin, body.file)).await
}

async fn reload_zone(State(plane): Plane, UrlPath(origin): UrlPath<String>) -> Response {
    call(plane, move |p| p.reload_zone(&origin)).await
}

async fn release_zone(State(plane): Plane, UrlPath(origin): UrlPath<String>) -> Response {
    call(plane, move |p| p.release_zone(&origin)).await
}

async fn remove_zone(State(plane): Plane, UrlPath(origin): UrlPath<String>) -> Response {
    call(plane, move |p| p.remove_zone(&origin)).await
}

async fn reload(State(plane): Plane) -> Response {
    call(plane, |p| p.reload()).await
}

async fn services(State(plane): Plane) -> Response {
    call(plane, |p| p.services()).await
}

async fn service(State(plane): Plane, UrlPath(label): UrlPath<String>) -> Response {
    call(plane, move |p| p.service(&label)).await
}

#[derive(Debug, Deserialize)]
struct PoolFilter {
    pool: Option<String>,
}

async fn endpoints(State(plane): Plane, Query(filter): Query<PoolFilter>) -> Response {
    call(plane, move |p| p.endpoints(filter.pool.as_deref())).await
}

async fn drain(State(plane): Plane, Json(endpoint): Json<EndpointRef>) -> Response {
    call(plane, move |p| p.drain(endpoint)).await
}

async fn undrain(State(plane): Plane, Json(endpoint): Json<EndpointRef>) -> Response {
    call(plane, move |p| p.undrain(endpoint)).await
}

async fn weight(State(plane): Plane, Json(change): Json<WeightChange>) -> Response {
    call(plane, move |p| p.set_weight(change)).await
}

async fn clear_weight(State(plane): Plane, Json(endpoint): Json<EndpointRef>) -> Response {
    call(plane, move |p| p.clear_weight(endpoint)).await
}

async fn register(
    State(plane): Plane,
    UrlPath(pool): UrlPath<String>,
    Json(registration): Json<Registration>,
) -> Response {
    call(plane, move |p| p.register(&pool, registration)).await
}

async fn deregister(
    State(plane): Plane,
    UrlPath((pool, address)): UrlPath<(String, IpAddr)>,
) -> Response {
    call(plane, move |p| p.deregister(&pool, address)).await
}

async fn heartbeat(
    State(plane): Plane,
    UrlPath((pool, address)): UrlPath<(String, IpAddr)>,
) -> Response {
    call(plane, move |p| p.heartbeat(&pool, address)).await
}

async fn push_load(
    State(plane): Plane,
    UrlPath((pool, address)): UrlPath<(String, IpAddr)>,
    Json(report): Json<LoadReport>,
) -> Response {
    call(plane, move |p| p.push_load(&pool, address, report)).await
}

async fn health(State(plane): Plane) -> Response {
    call(plane, |p| p.health()).await
}

async fn stats(State(plane): Plane) -> Response {
    call(plane, |p| p.stats()).await
}

#[derive(Debug, Deserialize)]
struct SimulateQuery {
    name: String,
    client: String,
    qtype: Option<String>,
}

async fn simulate(State(plane): Plane, Query(query): Query<SimulateQuery>) -> Response {
    call(plane, move |p| {
        p.simulate(&query.name, &query.client, query.qtype.as_deref())
    })
    .await
}

/// Records shown at most, unless the request asks for fewer or more.
const RECORDS_SHOWN: usize = 500;

#[derive(Debug, Deserialize)]
struct RecordSearch {
    #[serde(default)]
    search: String,
    limit: Option<usize>,
}

async fn zone_records(
    State(plane): Plane,
    UrlPath(origin): UrlPath<String>,
    Query(search): Query<RecordSearch>,
) -> Response {
    let limit = search.limit.unwrap_or(RECORDS_SHOWN);
    call(plane, move |p| {
        p.zone_records(&origin, &search.search, limit)
    })
    .await
}

async fn policy(State(plane): Plane) -> Response {
    call(plane, |p| p.policy()).await
}

async fn check_policy(State(plane): Plane, Json(edit): Json<PolicyEdit>) -> Response {
    call(plane, move |p| p.check_policy(&edit.text)).await
}

async fn apply_policy(State(plane): Plane, Json(edit): Json<PolicyEdit>) -> Response {
    call(plane, move |p| p.apply_policy(&edit.text)).await
}

async fn anycast(State(plane): Plane, Json(change): Json<AnycastChange>) -> Response {
    call(plane, move |p| p.set_anycast(change.announce)).await
}

async fn events(State(plane): Plane) -> Response {
    super::events::stream(plane.changes()).into_response()
}
