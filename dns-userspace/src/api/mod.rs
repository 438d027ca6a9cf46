//! The control API: HTTP with JSON bodies, on a unix socket (and, with a
//! bearer token, on TCP). `types` is the contract, `server` serves any
//! [`ControlPlane`] (the daemon implements it), `client` is what the CLI
//! talks to a running daemon with.

pub mod client;
pub mod events;
pub mod server;
pub mod types;

use std::path::PathBuf;

use std::net::IpAddr;

use types::{
    AnycastStatus, Applied, DnssecZone, EndpointInfo, EndpointRef, HealthRow, LoadReport,
    PolicyCheck, PolicyFile, Registration, ServiceDetail, ServiceInfo, Simulation, Stats, Status,
    WeightChange, ZoneInfo, ZoneRecords,
};

/// Where the daemon listens for control requests unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/dnslb/control.sock";

/// Why a request was not carried out, and what that means for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The change is invalid (a bad file, an unknown endpoint): nothing
    /// changed.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The daemon could not do it (a kernel map full, a poisoned lock).
    Failed,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl ToString) -> Refusal {
        Refusal {
            kind,
            message: message.to_string(),
        }
    }
}

pub type Answer<T> = Result<T, Refusal>;

/// What the control API can ask of a running daemon. Calls may block (they
/// read files and write kernel maps); the server runs them off the async
/// threads.
pub trait ControlPlane: Send + Sync + 'static {
    fn status(&self) -> Answer<Status>;
    fn zones(&self) -> Answer<Vec<ZoneInfo>>;
    /// The signed zones' keys and signatures.
    fn dnssec(&self) -> Answer<Vec<DnssecZone>>;
    /// Starts a roll of a key of the zone `origin`, which dnslb signs.
    fn roll_key(&self, origin: &str, key: crate::signer::Roll) -> Answer<DnssecZone>;
    /// Serves the zone `origin` from `file` (added, or replacing its file).
    fn load_zone(&self, origin: &str, file: PathBuf) -> Answer<Applied>;
    fn reload_zone(&self, origin: &str) -> Answer<Applied>;
    fn remove_zone(&self, origin: &str) -> Answer<Applied>;
    /// Drops the control API's change to a zone: served as the files say.
    fn release_zone(&self, origin: &str) -> Answer<Applied>;
    /// As SIGHUP: the policy file and every zone file read again.
    fn reload(&self) -> Answer<Applied>;
    fn services(&self) -> Answer<Vec<ServiceInfo>>;
    fn service(&self, label: &str) -> Answer<ServiceDetail>;
    fn endpoints(&self, pool: Option<&str>) -> Answer<Vec<EndpointInfo>>;
    fn drain(&self, endpoint: EndpointRef) -> Answer<()>;
    fn undrain(&self, endpoint: EndpointRef) -> Answer<()>;
    fn set_weight(&self, change: WeightChange) -> Answer<()>;
    /// Back to the policy file's weight.
    fn clear_weight(&self, endpoint: EndpointRef) -> Answer<()>;
    /// Registers (or re-registers) an instance of a registered pool.
    fn register(&self, pool: &str, registration: Registration) -> Answer<Registration>;
    fn deregister(&self, pool: &str, address: IpAddr) -> Answer<()>;
    /// Renews an instance's TTL.
    fn heartbeat(&self, pool: &str, address: IpAddr) -> Answer<Registration>;
    /// Takes in a pushed load for an endpoint of a pool whose load is
    /// pushed; answers the endpoint as it is weighed now.
    fn push_load(&self, pool: &str, address: IpAddr, report: LoadReport) -> Answer<EndpointInfo>;
    fn health(&self) -> Answer<Vec<HealthRow>>;
    fn stats(&self) -> Answer<Stats>;
    /// What a client (an address or a subnet) gets for `name` and
    /// `qtype` (A when not given), and who answers it.
    fn simulate(&self, name: &str, client: &str, qtype: Option<&str>) -> Answer<Simulation>;
    /// The records of the zone `origin` matching `search`, at most `limit`.
    fn zone_records(&self, origin: &str, search: &str, limit: usize) -> Answer<ZoneRecords>;
    fn policy(&self) -> Answer<PolicyFile>;
    /// Checks a new policy text, and diffs it against the file served.
    fn check_policy(&self, text: &str) -> Answer<PolicyCheck>;
    /// Replaces the policy file with `text` and applies it, all or nothing.
    fn apply_policy(&self, text: &str) -> Answer<Applied>;
    /// Withdraws this node's anycast addresses (`false`) or announces
    /// them again.
    fn set_anycast(&self, announce: bool) -> Answer<AnycastStatus>;
    /// Follows changes of what is answered (health, overrides, members,
    /// configuration, zones): the count of them so far.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}
