//! The policy file as written: serde structures that mirror the TOML, with
//! the spans needed to name a line in errors. `super::compile` turns them
//! into the checked model the daemon runs.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default)]
    pub zone: Vec<Spanned<ZoneSpec>>,
    pub geo: Option<Spanned<GeoSpec>>,
    #[serde(default)]
    pub check: BTreeMap<Spanned<String>, Spanned<CheckSpec>>,
    #[serde(default)]
    pub pool: BTreeMap<Spanned<String>, Spanned<PoolSpec>>,
    #[serde(default)]
    pub service: BTreeMap<Spanned<String>, Spanned<ServiceSpec>>,
    #[serde(default)]
    pub latency: Vec<Spanned<LatencySpec>>,
    #[serde(default)]
    pub hook: BTreeMap<Spanned<String>, Spanned<HookFileSpec>>,
    /// Service addresses this node announces (anycast) while it serves.
    pub anycast: Option<Spanned<AnycastFileSpec>>,
    /// TSIG keys (RFC 8945) by name, for zone transfers and NOTIFY.
    #[serde(default)]
    pub tsig_key: BTreeMap<Spanned<String>, Spanned<TsigKeySpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastFileSpec {
    pub addresses: Vec<std::net::IpAddr>,
    /// The dummy interface (default `dnslb0`).
    pub interface: Option<String>,
    /// Upstream pools: announced only while each has an endpoint this
    /// node's own checks see healthy.
    #[serde(default)]
    pub pools: Vec<String>,
    /// How long a stopping daemon answers after withdrawing (default 2s).
    #[serde(default, deserialize_with = "duration")]
    pub grace: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKeySpec {
    /// hmac-sha256 (the default), hmac-sha384 or hmac-sha512.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// The shared secret, base64 as `keymgr -t` and `tsig-keygen` print it.
    pub secret: Option<String>,
    /// Or a file holding it (relative to the policy file), readable by
    /// the daemon and by no one else on the host.
    pub secret_file: Option<PathBuf>,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    pub origin: String,
    pub file: PathBuf,
    /// Networks that may transfer the zone (AXFR, IXFR).
    #[serde(default)]
    pub allow_transfer: Vec<String>,
    /// Secondaries (`ADDR:PORT`) sent a NOTIFY on each new version.
    #[serde(default)]
    pub notify: Vec<String>,
    /// A secondary zone: copied from this primary (`ADDR:PORT`) into
    /// `file`, which keeps the last good copy.
    pub primary: Option<String>,
    /// The `[tsig_key.NAME]` that signs the zone's transfers and NOTIFY:
    /// required of those who transfer it, used towards its primary and
    /// its secondaries.
    pub tsig_key: Option<String>,
    /// `"file"` (the default: a changed file must raise its SOA serial)
    /// or `"auto"` (dnslb raises it and writes it into the file).
    pub serial: Option<String>,
    /// `"online"`, or a `[zone.dnssec]` table: dnslb signs the zone's
    /// answers with keys it keeps in the key directory.
    pub dnssec: Option<DnssecSpec>,
}

/// `dnssec = "online"`, or the table with the signing policy.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DnssecSpec {
    Mode(String),
    Policy(DnssecPolicySpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecPolicySpec {
    /// `"ecdsap256sha256"` (the default) or `"ed25519"`.
    pub algorithm: Option<crate::signer::keyfile::KeyAlgorithm>,
    /// `"csk"` (one combined key, the default) or `"split"` (KSK and ZSK).
    pub keys: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub zsk_lifetime: Option<Duration>,
    /// How long each signature is valid.
    #[serde(default, deserialize_with = "duration")]
    pub validity: Option<Duration>,
    pub dnskey_ttl: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub propagation: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub ds_wait: Option<Duration>,
    pub cache_entries: Option<usize>,
    pub cache_bytes: Option<usize>,
}

/// Where client locations come from: a MaxMind database or a CSV of
/// `network,continent,country,subdivision,latitude,longitude`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSpec {
    pub database: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Http,
    Https,
    Tcp,
    Dns,
    Command,
    Calculated,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub kind: CheckKind,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    #[serde(default)]
    pub invert: bool,
    /// Before the first probe: `probe` (the default), `up` or `down`.
    pub initial: Option<crate::health::Initial>,
    pub port: Option<u16>,
    /// HTTP(S): request path, status range, Host header, body search.
    pub path: Option<String>,
    pub status: Option<[u16; 2]>,
    pub host: Option<String>,
    pub search: Option<String>,
    /// DNS: the name asked (type A unless `qtype`), and what the answer
    /// must hold (an address or text found in its records).
    pub query: Option<String>,
    pub qtype: Option<String>,
    pub expect: Option<String>,
    /// Command: run by `sh -c`, with the endpoint in `$DNSLB_ADDRESS` and
    /// `$DNSLB_PORT`; exit status 0 is healthy.
    pub command: Option<String>,
    /// Calculated: the checks combined, and how many must pass (default
    /// all of them; 1 for "any of").
    pub children: Option<Vec<String>>,
    pub min_healthy: Option<usize>,
    /// In a fleet: `fleet` (the default: the nodes' shared verdict) or
    /// `local` (this node's probes alone).
    pub verdict: Option<VerdictKind>,
    /// For a fleet verdict: the fraction of the live nodes checking an
    /// endpoint that must see it healthy (default 0.18, Route 53's).
    pub min_fraction: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Fleet,
    Local,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// `static` (the default): the endpoints listed here; `docker`,
    /// `registered`, `function`: endpoints that come and go at run time.
    pub kind: Option<String>,
    pub check: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// `docker`: the engine, the further labels selected on, the re-list
    /// period, the network whose addresses are answered.
    pub docker_host: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "duration")]
    pub relist: Option<Duration>,
    pub network: Option<String>,
    /// `function`: how an instance starts and where, how many, and what
    /// a query gets while none is ready.
    pub command: Option<String>,
    pub image: Option<String>,
    pub addresses: Option<String>,
    pub port: Option<u16>,
    pub min: Option<usize>,
    pub max: Option<usize>,
    pub target_qps: Option<f64>,
    #[serde(default, deserialize_with = "duration")]
    pub idle_after: Option<Duration>,
    pub cold_start: Option<crate::backends::ColdStartMode>,
    #[serde(default, deserialize_with = "duration")]
    pub deadline: Option<Duration>,
    pub fallback: Option<String>,
    pub busy: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub start_timeout: Option<Duration>,
    /// Weights that follow each endpoint's load.
    pub load: Option<LoadFileSpec>,
    /// How long an endpoint that joins or comes back up takes to reach its
    /// whole weight.
    #[serde(default, deserialize_with = "duration")]
    pub slow_start: Option<Duration>,
}

/// A pool's `load = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadFileSpec {
    pub source: LoadSourceKind,
    /// `watermarks` (the default) or `inverse`.
    pub mode: Option<LoadModeKind>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub capacity: Option<f64>,
    pub smoothing: Option<f64>,
    pub min_change: Option<f64>,
    #[serde(default, deserialize_with = "duration")]
    pub expire: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    /// `http`: the URL read, `{address}` standing for the endpoint's
    /// address; `prometheus`: the server's base URL.
    pub url: Option<String>,
    /// `agent`: the agent's TCP port on the endpoint.
    pub port: Option<u16>,
    /// `prometheus`: the PromQL expression, `{address}` as for `url`.
    pub query: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoadSourceKind {
    Push,
    Http,
    Agent,
    Prometheus,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoadModeKind {
    Watermarks,
    Inverse,
}

/// `[hook.NAME]`: a webhook (`url`) or a `command`, the event kinds it
/// gets, and how hard delivery tries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookFileSpec {
    pub url: Option<String>,
    pub command: Option<String>,
    #[serde(default)]
    pub events: Vec<crate::hooks::EventKind>,
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub backoff: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub dead_letter: Option<PathBuf>,
}

/// `"198.18.0.10"`, or `{ address = "198.18.0.10", weight = 3, port = 8080 }`.
#[derive(Debug)]
pub enum EndpointSpec {
    Address(IpAddr),
    Full(EndpointTable),
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EndpointSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an IP address, or a table with `address`")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EndpointSpec, E> {
                text.parse()
                    .map(EndpointSpec::Address)
                    .map_err(|_| E::custom(format!("`{text}` is not an IP address")))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<EndpointSpec, M::Error> {
                let deserializer = serde::de::value::MapAccessDeserializer::new(map);
                EndpointTable::deserialize(deserializer).map(EndpointSpec::Full)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointTable {
    pub address: IpAddr,
    #[serde(default, deserialize_with = "weight")]
    pub weight: Option<u8>,
    pub port: Option<u16>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(rename = "type", default = "default_type")]
    pub record_type: String,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Answer nothing when every endpoint is down, rather than all of them.
    #[serde(default)]
    pub fail_closed: bool,
    pub policy: PolicySpec,
}

fn default_type() -> String {
    "A".into()
}

fn default_ttl() -> u32 {
    60
}

/// One routing policy; `pool = "x"` alone is shorthand for
/// `kind = "simple", pool = "x"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub kind: Option<PolicyKind>,
    pub pool: Option<String>,
    /// `round_robin`: records per answer (default: all).
    pub answers: Option<usize>,
    /// `weighted`, `geolocation`, `ip`: the branches.
    pub branches: Option<Vec<Spanned<BranchSpec>>>,
    /// `failover`.
    pub primary: Option<Spanned<Box<PolicySpec>>>,
    pub secondary: Option<Spanned<Box<PolicySpec>>>,
    /// `latency`, `geoproximity`: one branch per region.
    pub regions: Option<Vec<Spanned<BranchSpec>>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Simple,
    Weighted,
    Failover,
    Multivalue,
    RoundRobin,
    Geolocation,
    Geoproximity,
    Latency,
    Ip,
}

/// A branch of a policy: what selects it, and the policy under it (a
/// nested `policy` table, or `pool = "x"` for a simple one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    pub name: Option<String>,
    pub pool: Option<String>,
    pub policy: Option<PolicySpec>,
    /// `weighted`.
    #[serde(default, deserialize_with = "weight")]
    pub weight: Option<u8>,
    /// `geolocation`: the most specific match wins; `default` takes the rest.
    pub continent: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    #[serde(default)]
    pub default: bool,
    /// `ip`: client networks.
    pub cidrs: Option<Vec<String>>,
    /// `latency`: the region named in `[[latency]]` tables.
    pub region: Option<String>,
    /// `geoproximity`: where the region is, and its bias (-99..=99).
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub bias: Option<i8>,
}

/// A latency measurement: clients in `network` (or in `country`) reach
/// `region` in `ms` milliseconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub network: Option<String>,
    pub country: Option<String>,
    pub region: String,
    pub ms: u32,
}

/// Route 53's weights: 0 to 255.
fn weight<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    let weight = i64::deserialize(deserializer)?;
    u8::try_from(weight)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("weight {weight} is not 0 to 255")))
}

/// `"250ms"`, `"2s"`, `"1m"`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like 500ms, 2s, 1m, 6h or 30d"
        ))
    })
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        "h" => Some(Duration::from_secs(number * 3600)),
        "d" => Some(Duration::from_secs(number * 86_400)),
        _ => None,
    }
}
