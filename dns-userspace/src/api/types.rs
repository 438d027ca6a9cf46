//! The control API's JSON bodies: what the daemon sends and the CLI reads.
//! One definition for both sides, so they cannot drift apart.

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// The interface the XDP program is attached to; `None` with `--no-xdp`.
    pub interface: Option<String>,
    /// "native", "skb", or "off".
    pub xdp_mode: String,
    pub uptime_seconds: u64,
    pub zones: usize,
    pub services: usize,
    /// One row per kernel hot-name map (record type and name size class).
    pub kernel_maps: Vec<MapFill>,
    /// The client-network tries of client-dependent services.
    #[serde(default)]
    pub client_networks: Option<ClientNetworkFill>,
    /// The kernel's signed answers: what it holds, and the names of signed
    /// zones whose DO queries it passes to the daemon.
    #[serde(default)]
    pub kernel_signatures: Option<KernelSignatures>,
    /// In a fleet (`--cluster`): its store and whether it is reached.
    #[serde(default)]
    pub fleet: Option<FleetStatus>,
    /// With `[anycast]`: what this node announces.
    #[serde(default)]
    pub anycast: Option<AnycastStatus>,
    /// The operator's drains and weights in force.
    #[serde(default)]
    pub overrides: OverridesInForce,
    /// Where the operator's changes are kept across restarts.
    #[serde(default)]
    pub state_dir: PathBuf,
    /// Where it answers DNS: each address and port (every address of the
    /// host for a wildcard `--listen`).
    #[serde(default)]
    pub answering_on: Vec<String>,
    /// The policy file served (`--config`), if any.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// The control API's socket, and its TCP address if any.
    #[serde(default)]
    pub control_socket: PathBuf,
    #[serde(default)]
    pub control_listen: Option<String>,
    /// The endpoints of every pool: how many, and how many are down (their
    /// checks fail) or drained.
    #[serde(default)]
    pub endpoints: EndpointCounts,
}

/// Endpoints in all, down and drained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounts {
    pub total: usize,
    pub down: usize,
    pub drained: usize,
}

/// How many drains and weight overrides are in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverridesInForce {
    pub drained: usize,
    pub weights: usize,
}

/// The anycast addresses this node announces, and why (or why not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnycastStatus {
    /// The dummy interface holding them.
    pub interface: Option<String>,
    pub announced: Vec<String>,
    pub reason: String,
}

/// `POST /v1/anycast`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnycastChange {
    pub announce: bool,
}

/// This node's view of its fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The store, as `--cluster` and `--cluster-prefix` name it.
    pub store: String,
    pub node: String,
    /// Whether etcd answers: if not, this node serves its last state and
    /// refuses changes.
    pub connected: bool,
    /// The store's revision this node has applied.
    pub revision: i64,
}

/// How full the client-network tries are, and whether the largest
/// client-dependent service's next generation fits beside them (a
/// service's networks are written anew, beside the old, on every change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientNetworkFill {
    pub entries: u64,
    pub capacity: u32,
    /// The networks of the client-dependent service with the most.
    pub largest_service: u64,
}

/// What the kernel holds to answer DO queries for signed zones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSignatures {
    /// Values answered with signatures (a name's, or a client network's).
    pub signed_values: usize,
    /// Signature map entries: one per RRset a value can answer with.
    pub entries: u64,
    /// Names of signed zones whose DO queries go to the daemon.
    pub passed: Vec<PassedUnsigned>,
}

/// A name of a signed zone whose DO queries the kernel passes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedUnsigned {
    pub name: String,
    pub record_type: String,
    pub reason: String,
}

impl ClientNetworkFill {
    /// Whether every service can be written anew with its old generation
    /// still in place.
    pub fn next_generation_fits(&self) -> bool {
        self.entries + self.largest_service <= u64::from(self.capacity)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    pub record_type: String,
    /// The longest name the map holds, in wire bytes.
    pub names_up_to: usize,
    pub entries: u64,
    pub capacity: u32,
}

/// Where a zone being served was named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZoneSource {
    CommandLine,
    PolicyFile,
    ControlApi,
}

/// `GET /v1/zones` (a list), `GET /v1/zones/{origin}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneInfo {
    pub origin: String,
    pub file: PathBuf,
    pub source: ZoneSource,
    pub serial: u32,
    pub names: usize,
    /// Whether the zone holds DNSSEC records (DO queries go to the daemon).
    pub signed: bool,
}

/// `GET /v1/dnssec`: a signed zone's keys and signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecZone {
    pub origin: String,
    /// `presigned` (signed elsewhere, served as its file has it) or
    /// `online` (dnslb signs it).
    #[serde(default)]
    pub mode: String,
    pub keys: Vec<DnssecKey>,
    /// RRSIG records in the zone (signed elsewhere), or RRsets whose
    /// signatures are cached (online).
    pub signatures: usize,
    /// When the first of them expires (seconds since 1970): past it,
    /// validating resolvers find the zone's answers bogus.
    pub first_expiration: Option<u64>,
    /// Online: the signer's figures.
    #[serde(default)]
    pub signer: Option<SignerInfo>,
}

/// What an online signer has done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerInfo {
    /// When the next key event is due (seconds since 1970).
    pub next_key_event: Option<u64>,
    pub cache_entries: usize,
    pub cache_bytes: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub signatures_made: u64,
    pub signing_failures: u64,
    /// How long each signature is valid, in seconds.
    pub validity: u64,
}

/// `POST /v1/dnssec/{origin}/roll`: start a roll of this key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRoll {
    pub key: crate::signer::Roll,
}

/// One DNSKEY of a signed zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecKey {
    pub tag: u16,
    /// Its number (13) and name (ECDSAP256SHA256).
    pub algorithm: u8,
    pub algorithm_name: String,
    /// `ksk` (the SEP flag: its DS goes to the parent) or `zsk`.
    pub role: String,
    /// Its DS record's data, SHA-256 (`TAG ALGORITHM 2 DIGEST`).
    pub ds: Option<String>,
    /// Online: where the key is in its life (`published`, `active`,
    /// `retired`...), its next event, and whether its CDS is published.
    #[serde(default)]
    pub state: Option<crate::signer::KeyState>,
    #[serde(default)]
    pub next_event: Option<u64>,
    #[serde(default)]
    pub cds_published: bool,
}

/// `PUT /v1/zones/{origin}`: serve the zone from this file (added, or
/// replacing the file it was served from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneLoad {
    pub file: PathBuf,
}

/// `GET /v1/services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub label: String,
    pub name: String,
    pub record_type: String,
    pub ttl: u32,
    /// The policy at the root of the tree ("weighted", "failover", ...).
    pub policy: String,
    pub fail_closed: bool,
    /// "healthy", "failing open" (no healthy endpoint: the failed ones are
    /// answered) or "failing closed" (none answered); for a client-dependent
    /// service, the worst of its client networks.
    #[serde(default)]
    pub standing: String,
    /// Why it is failing; empty when healthy.
    #[serde(default)]
    pub standing_reason: String,
}

/// `GET /v1/services/{label}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceDetail {
    pub service: ServiceInfo,
    /// The policy tree, one line per node, indented by depth.
    pub tree: Vec<String>,
    /// For client-dependent services: which answers each client network
    /// gets now (the networks the kernel holds, /0 last).
    pub networks: Vec<NetworkAnswer>,
    /// The endpoints of the pools the tree answers from.
    pub endpoints: Vec<EndpointInfo>,
    /// The tree as a graph, as Route 53's Traffic Flow draws it: the name,
    /// the policy nodes, the pools and their endpoints.
    #[serde(default)]
    pub graph: Vec<GraphNode>,
}

/// One node of a service's graph; its parent comes before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub id: usize,
    pub parent: Option<usize>,
    pub kind: NodeKind,
    /// What the node is: the name, "failover", "pool web-eu", an address.
    pub label: String,
    /// How it decides: "primary, then secondary", "up to 2 healthy".
    #[serde(default)]
    pub detail: String,
    /// What leads to it from its parent: "weight 3", "primary", a branch.
    pub edge: String,
    /// Pool nodes: the branch whose answers they count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Pool nodes: answers from the branch so far (kernel and daemon).
    #[serde(default)]
    pub answers: u64,
    /// Endpoint nodes: the endpoint, with health and overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Name,
    Policy,
    Pool,
    Endpoint,
}

/// `GET /v1/simulate?name=N&client=C[&qtype=T]`: what a client (an
/// address, or a subnet as EDNS Client Subnet carries it) gets for a name,
/// and from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    pub name: String,
    pub qtype: String,
    /// The client network the answer was decided for.
    pub client: String,
    pub rcode: String,
    /// The answer section, one record a line in presentation format.
    pub answers: Vec<String>,
    /// The service whose policy decided, if one did.
    pub service: Option<String>,
    /// The branches (pool nodes of the graph) the answer comes from; a
    /// weighted choice between branches lists each.
    pub branches: Vec<String>,
    /// Who answers this query: `kernel` (XDP) or `daemon`.
    pub answered_by: String,
    /// Why the daemon and not the kernel, or what the kernel holds.
    pub reason: String,
}

/// `GET /v1/zones/{origin}/records[?search=S&limit=N]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRecords {
    pub origin: String,
    /// Records that match the search, of which the first `limit` are shown.
    pub matching: usize,
    pub records: Vec<RecordRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRow {
    pub name: String,
    pub ttl: u32,
    pub record_type: String,
    pub data: String,
}

/// `GET /v1/policy`: the policy file being served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    pub file: PathBuf,
    pub text: String,
}

/// The body of `POST /v1/policy/check` and `PUT /v1/policy`: a new text
/// for the policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEdit {
    pub text: String,
}

/// `POST /v1/policy/check`: what `dnslb check` says of the text, and how it
/// differs from the file being served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub problems: Vec<Problem>,
    pub diff: Vec<DiffLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The line of the policy text, when the problem has one.
    pub line: Option<usize>,
    /// The whole message, as `dnslb check` prints it.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub change: LineChange,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineChange {
    Same,
    Added,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAnswer {
    pub network: String,
    /// The branch the network's answers come from.
    pub branch: String,
    pub addresses: Vec<IpAddr>,
}

/// `GET /v1/endpoints[?pool=P]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub pool: String,
    pub address: IpAddr,
    /// The weight in use (an override, or the policy file's).
    pub weight: u8,
    /// The policy file's weight.
    pub file_weight: u8,
    /// The health checks' verdict (true for pools without a check).
    pub healthy: bool,
    pub drained: bool,
    /// What its source says: `ready`, `starting` (not answered until
    /// ready) or `draining` (being stopped; no longer answered).
    pub condition: String,
    /// Its load (a utilisation, smoothed) while a report counts.
    #[serde(default)]
    pub load: Option<f64>,
    /// The weight draws use: `weight` times what its load and slow start
    /// leave of it (0: shed).
    #[serde(default)]
    pub effective_weight: f64,
    /// Why the effective weight is what it is; empty when it is `weight`
    /// and nothing was reported.
    #[serde(default)]
    pub weighing: String,
}

/// `POST /v1/pools/{pool}/endpoints/{address}/load`: a load figure (a
/// utilisation, or a count the pool's capacity divides), or HAProxy agent
/// words (`75%`, `drain`, `maint`, `ready`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub load: LoadValue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoadValue {
    Figure(f64),
    Words(String),
}

impl LoadValue {
    /// What the value says, as a load book reads it.
    pub fn reading(&self) -> Result<crate::load::Reading, crate::load::ReadingError> {
        match self {
            LoadValue::Figure(figure) => crate::load::Reading::figure(*figure),
            LoadValue::Words(words) => crate::load::Reading::parse(words),
        }
    }
}

/// An instance of a registered pool: `POST /v1/pools/{pool}/instances`
/// registers it (again), `DELETE .../instances/{address}` deregisters it,
/// `POST .../instances/{address}/heartbeat` renews its TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub address: IpAddr,
    #[serde(default = "one")]
    pub weight: u8,
    /// The port its checks probe, when not the check's own.
    #[serde(default)]
    pub port: Option<u16>,
    /// Seconds a heartbeat keeps it registered; none: until deregistered.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Unix time (seconds) it expires at unless renewed; set by the daemon.
    #[serde(default)]
    pub expires: Option<u64>,
}

fn one() -> u8 {
    1
}

/// An endpoint as the operator names it: an address, in one pool or (with
/// no pool) in every pool that has it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointRef {
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// `POST /v1/endpoints/drain` and `/undrain`.
pub type EndpointChange = EndpointRef;

/// `POST /v1/endpoints/weight`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightChange {
    #[serde(flatten)]
    pub endpoint: EndpointRef,
    pub weight: u8,
}

/// `GET /v1/health`: one row per check on an endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthRow {
    pub check: String,
    pub pool: String,
    pub address: IpAddr,
    pub port: Option<u16>,
    pub up: bool,
    pub last_latency_ms: f64,
    /// Unix time of the last change of verdict; `None` before the first.
    pub last_transition: Option<u64>,
    pub failures_in_row: u64,
    pub probes: u64,
    /// The last probes' durations, oldest first.
    #[serde(default)]
    pub latency_history_ms: Vec<f64>,
    /// Why the last probe that failed failed ("connection refused");
    /// empty while none has.
    #[serde(default)]
    pub last_failure: String,
}

/// `GET /v1/stats`: counters since start, for rates the client takes two
/// readings of; and the names most asked of the daemon in the last minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_seconds: f64,
    /// Queries answered in the kernel.
    pub kernel_answered: u64,
    /// Queries the kernel passed on, by reason.
    pub kernel_passed: Vec<PassedQueries>,
    /// Queries the daemon answered, by transport.
    pub userspace_answered: Vec<TransportQueries>,
    /// Answers per policy branch.
    pub branches: Vec<BranchAnswers>,
    /// The names most queried from the daemon over the last minute.
    pub top_names: Vec<NameQueries>,
}

/// Queries the kernel passed to the daemon for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedQueries {
    pub reason: String,
    pub queries: u64,
}

/// Queries the daemon answered over one transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportQueries {
    pub transport: String,
    pub queries: u64,
}

/// Answers drawn from one branch of a service's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchAnswers {
    pub service: String,
    pub branch: String,
    pub answers: u64,
}

/// Queries for one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameQueries {
    pub name: String,
    pub queries: u64,
}

/// `POST /v1/reload` and the zone changes: what was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub zones: usize,
    pub services: usize,
    /// Hot names written to and removed from the kernel maps.
    pub kernel_written: usize,
    pub kernel_removed: usize,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
