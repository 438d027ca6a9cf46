//! From the file as written to the checked model: names resolved to
//! indices, defaults filled in, client-dependent policies compiled into
//! tables of networks.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    path::Path,
    time::Duration,
};

use hickory_proto::rr::{Name, RecordType};
use toml::Spanned;

use super::{
    BranchLabels, Config, secrets, sources,
    spec::{
        AnycastFileSpec, BranchSpec, CheckKind, CheckSpec, DnssecSpec, EndpointSpec, FileSpec,
        PolicyKind, PolicySpec, PoolSpec, ServiceSpec, VerdictKind, ZoneSpec,
    },
    weighing,
};
use crate::{
    anycast::AnycastSpec,
    backends::PoolSource,
    cli::ZoneArg,
    health::{CheckDef, DEFAULT_MIN_FRACTION, Probe, VerdictScope},
    load::Weighing,
    policy::{
        ClientNet, ClientTable, GeoDb, MULTIVALUE_ANSWERS, Pick, Policy, Pool, PoolEndpoint,
        Service, distance_km, parse_exact_network,
    },
    server::{TsigKey, ZoneTransfer},
    signer::SigningPolicy,
    zone::{WireName, serial::SerialRule},
};

/// A problem, the span and name of the entry it is in, and the branch
/// path inside that entry.
#[derive(Debug)]
pub struct Problem {
    pub span: Option<Range<usize>>,
    pub entry: Option<String>,
    pub path: Vec<String>,
    pub message: String,
}

impl Problem {
    fn new(span: Option<Range<usize>>, message: impl ToString) -> Problem {
        Problem {
            span,
            entry: None,
            path: Vec::new(),
            message: message.to_string(),
        }
    }

    /// The problem inside the entry `entry` spanning `span`.
    fn within(span: Range<usize>, entry: String, message: impl ToString) -> Problem {
        Problem {
            entry: Some(entry),
            ..Problem::new(Some(span), message)
        }
    }
}

/// A problem at a branch path of a policy tree, and the span of the
/// innermost branch it is in (its line is the problem's).
#[derive(Debug)]
struct BranchProblem {
    path: Vec<String>,
    message: String,
    span: Option<Range<usize>>,
}

fn at(path: &[String], message: impl ToString) -> BranchProblem {
    BranchProblem {
        path: path.to_vec(),
        message: message.to_string(),
        span: None,
    }
}

/// `result`, with a problem placed in the branch spanning `span` unless a
/// branch inside it already placed it.
fn placed<T>(span: Range<usize>, result: Result<T, BranchProblem>) -> Result<T, BranchProblem> {
    result.map_err(|mut problem| {
        problem.span.get_or_insert(span);
        problem
    })
}

/// Where the file declares its services.
#[derive(Default)]
pub struct Spans {
    pub services: HashMap<String, Range<usize>>,
}

/// Compiles the whole file, entry by entry: a problem in one entry is
/// noted and the next entry is compiled, so that every problem comes back
/// at once. An entry that failed stays known by name (a pool that refers
/// to a failed check, or a service to a failed pool, is not reported
/// again), and what uses the `[geo]` data waits for it to read.
pub fn compile(
    spec: FileSpec,
    base: &Path,
    branches: BranchLabels,
) -> Result<(Config, Spans), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut keys = HashMap::new();
    for (name, key) in &spec.tsig_key {
        let spec = key.get_ref();
        let secret = match (&spec.secret, &spec.secret_file) {
            (Some(secret), None) => Ok(secret.clone()),
            (None, Some(file)) => secrets::read_secret_file(&base.join(file)),
            _ => Err("give `secret` or `secret_file`, one of them".to_owned()),
        };
        let compiled = secret
            .and_then(|secret| {
                TsigKey::new(name.get_ref(), &spec.algorithm, &secret).map_err(|e| e.to_string())
            })
            .map_err(|e| {
                problems.push(Problem::within(
                    key.span(),
                    format!("tsig_key `{}`", name.get_ref()),
                    e,
                ))
            });
        keys.insert(name.get_ref().as_str(), compiled);
    }
    let mut declared = Spans::default();
    let mut zones = Vec::new();
    for zone in &spec.zone {
        match compile_zone(zone.get_ref(), &keys, base) {
            Ok(compiled) => zones.push(compiled),
            Err(Some(e)) => problems.push(Problem::within(
                zone.span(),
                format!("zone {}", zone.get_ref().origin),
                e,
            )),
            Err(None) => {}
        }
    }
    let geo = match &spec.geo {
        Some(geo) => match load_geo(geo.get_ref(), base) {
            Ok(db) => Some(db),
            Err(e) => {
                problems.push(Problem::within(geo.span(), "[geo]".into(), e));
                // Latencies and policies by place would be wrong without
                // it: the [geo] problem is the one to fix first.
                return Err(problems);
            }
        },
        None => None,
    };

    // Aligned with the file's checks (and pools below), whose indices
    // references hold: a failed check is `Err`, a failed pool empty.
    let check_index = index(&spec.check);
    let mut checks = Vec::new();
    for (name, check) in &spec.check {
        let compiled = compile_check(name.get_ref(), check.get_ref(), &check_index);
        checks.push(compiled.map_err(|e| {
            problems.push(Problem::within(
                check.span(),
                format!("check `{}`", name.get_ref()),
                e,
            ))
        }));
    }
    let failed_checks: Vec<&str> = spec
        .check
        .keys()
        .zip(&checks)
        .filter(|(_, check)| check.is_err())
        .map(|(name, _)| name.get_ref().as_str())
        .collect();

    let pool_index = index(&spec.pool);
    let mut pools = Vec::new();
    let mut pool_sources = BTreeMap::new();
    let mut pool_weighing = BTreeMap::new();
    for (name, pool_spec) in &spec.pool {
        let name = name.get_ref();
        let compiled = if pool_refers_to(pool_spec.get_ref(), &failed_checks) {
            Err(None)
        } else {
            compile_pool(
                name,
                pool_spec.get_ref(),
                &checks,
                &check_index,
                &pool_index,
            )
            .map_err(Some)
        };
        match compiled {
            Ok((pool, source, weighing)) => {
                if let Some(source) = source {
                    pool_sources.insert(name.clone(), source);
                }
                if weighing != Weighing::default() {
                    pool_weighing.insert(name.clone(), weighing);
                }
                pools.push(pool);
            }
            Err(problem) => {
                if let Some(e) = problem {
                    problems.push(Problem::within(
                        pool_spec.span(),
                        format!("pool `{name}`"),
                        e,
                    ));
                }
                pools.push(Pool {
                    name: name.clone(),
                    endpoints: Vec::new(),
                    check: None,
                });
            }
        }
    }

    let mut latency = Vec::new();
    for entry in &spec.latency {
        match latency_networks(entry.get_ref(), geo.as_ref()) {
            Ok(networks) => {
                let e = entry.get_ref();
                latency.push((networks, e.region.clone(), e.ms));
            }
            Err(e) => problems.push(Problem::within(entry.span(), "[[latency]]".into(), e)),
        }
    }

    let mut compiler = PolicyCompiler {
        pools: &pools,
        pool_index: &pool_index,
        geo: geo.as_ref(),
        latency: &latency,
        branches,
        service: String::new(),
        family_v4: true,
    };
    let mut services: Vec<Service> = Vec::new();
    for (label, service) in &spec.service {
        match compiler.service(label.get_ref(), service.get_ref()) {
            Ok(compiled) => {
                // The first service to claim a name and type keeps it.
                if let Some(other) = services
                    .iter()
                    .find(|s| s.name == compiled.name && s.record_type == compiled.record_type)
                {
                    problems.push(Problem::within(
                        service.span(),
                        format!("service `{}`", label.get_ref()),
                        format!(
                            "service `{}` answers {} {} already",
                            other.label,
                            compiled.name.to_name(),
                            compiled.record_type
                        ),
                    ));
                    continue;
                }
                declared
                    .services
                    .insert(compiled.label.clone(), service.span());
                services.push(compiled);
            }
            Err(e) => problems.push(Problem {
                path: e.path,
                span: e.span.or(Some(service.span())),
                ..Problem::within(
                    service.span(),
                    format!("service `{}`", label.get_ref()),
                    e.message,
                )
            }),
        }
    }
    let mut hooks = Vec::new();
    for (name, hook) in &spec.hook {
        match sources::hook(name.get_ref(), hook.get_ref()) {
            Ok(mut def) => {
                def.dead_letter = def.dead_letter.map(|file| base.join(file));
                hooks.push(def);
            }
            Err(e) => problems.push(Problem::within(
                hook.span(),
                format!("hook `{}`", name.get_ref()),
                e,
            )),
        }
    }
    let branches = compiler.branches;
    let anycast = spec.anycast.as_ref().and_then(|anycast| {
        compile_anycast(anycast.get_ref(), &pools)
            .map_err(|e| problems.push(Problem::within(anycast.span(), "[anycast]".into(), e)))
            .ok()
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    let config = Config {
        zones,
        checks: checks.into_iter().flatten().collect(),
        pools,
        sources: pool_sources,
        weighing: pool_weighing,
        services,
        branches,
        hooks,
        anycast,
        declared: Default::default(),
    };
    Ok((config, declared))
}

/// Whether the pool names one of `checks` (its own or its busy check).
fn pool_refers_to(pool: &PoolSpec, checks: &[&str]) -> bool {
    [pool.check.as_deref(), pool.busy.as_deref()]
        .into_iter()
        .flatten()
        .any(|check| checks.contains(&check))
}

/// A pool and, unless it is static, where its endpoints come from.
fn compile_pool(
    name: &str,
    pool: &PoolSpec,
    checks: &[Result<CheckDef, ()>],
    check_index: &HashMap<&str, usize>,
    pool_index: &HashMap<&str, usize>,
) -> Result<(Pool, Option<PoolSource>, Weighing), String> {
    let source = sources::pool_source(name, pool, checks, check_index, pool_index)?;
    let weighing = weighing::weighing(pool)?;
    let check = match &pool.check {
        Some(check) => Some(
            *check_index
                .get(check.as_str())
                .ok_or_else(|| format!("no check named `{check}`"))?,
        ),
        None => None,
    };
    let pool = Pool {
        name: name.to_owned(),
        endpoints: pool.endpoints.iter().map(endpoint).collect(),
        check,
    };
    Ok((pool, source, weighing))
}

/// A `[[zone]]` entry, its TSIG key found among `keys`; `Err(None)` when
/// its key has a problem of its own (reported there).
fn compile_zone(
    zone: &ZoneSpec,
    keys: &HashMap<&str, Result<TsigKey, ()>>,
    base: &Path,
) -> Result<ZoneArg, Option<String>> {
    let mut origin = Name::from_ascii(&zone.origin).map_err(|e| format!("origin: {e}"))?;
    origin.set_fqdn(true);
    let allow = zone
        .allow_transfer
        .iter()
        .map(|network| parse_exact_network(network))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("allow_transfer: {e}"))?;
    let notify = zone
        .notify
        .iter()
        .map(|target| {
            target.parse().map_err(|_| {
                format!("notify: `{target}` is not an address and port like 198.18.0.3:53")
            })
        })
        .collect::<Result<_, _>>()?;
    let primary = match &zone.primary {
        Some(text) => Some(text.parse().map_err(|_| {
            format!("primary: `{text}` is not an address and port like 198.18.0.1:53")
        })?),
        None => None,
    };
    let key = match &zone.tsig_key {
        Some(name) => match keys.get(name.as_str()) {
            Some(Ok(key)) => Some(key.clone()),
            Some(Err(())) => return Err(None),
            None => return Err(Some(format!("tsig_key: no [tsig_key.{name}] in this file"))),
        },
        None => None,
    };
    let serial = match zone.serial.as_deref() {
        None | Some("file") => SerialRule::File,
        Some("auto") if primary.is_some() => {
            return Err(Some(
                "serial = \"auto\" is for a zone served from its file; a secondary serves its primary's serial".into(),
            ));
        }
        Some("auto") => SerialRule::Auto,
        Some(other) => {
            return Err(Some(format!(
                "serial: `{other}` is neither \"file\" nor \"auto\""
            )));
        }
    };
    let dnssec = match &zone.dnssec {
        None => None,
        Some(_) if primary.is_some() => {
            return Err(Some(
                "dnssec: a secondary zone serves its primary's signatures; sign it on the primary"
                    .into(),
            ));
        }
        Some(spec) => Some(signing_policy(spec).map_err(|problem| format!("dnssec: {problem}"))?),
    };
    // Read here so that a missing file is a problem on this entry's line,
    // found with the rest; a secondary's copy may not exist yet.
    let file = base.join(&zone.file);
    if primary.is_none()
        && let Err(error) = std::fs::File::open(&file)
    {
        return Err(Some(format!(
            "cannot read the zone file {}: {error}",
            file.display()
        )));
    }
    Ok(ZoneArg {
        origin,
        file,
        transfer: ZoneTransfer {
            primary,
            allow,
            notify,
            key,
            serial,
        },
        dnssec,
    })
}

/// The signing policy of `dnssec = "online"` or a `[zone.dnssec]` table.
fn signing_policy(spec: &DnssecSpec) -> Result<SigningPolicy, String> {
    let defaults = SigningPolicy::default();
    let table = match spec {
        DnssecSpec::Mode(mode) if mode == "online" => return Ok(defaults),
        DnssecSpec::Mode(other) => {
            return Err(format!(
                "`{other}` is not a way to sign: \"online\", or a [zone.dnssec] table"
            ));
        }
        DnssecSpec::Policy(table) => table,
    };
    let split = match table.keys.as_deref() {
        None | Some("csk") => false,
        Some("split") => true,
        Some(other) => return Err(format!("keys: `{other}` is neither \"csk\" nor \"split\"")),
    };
    let policy = SigningPolicy {
        algorithm: table.algorithm.unwrap_or(defaults.algorithm),
        split,
        zsk_lifetime: table.zsk_lifetime.unwrap_or(defaults.zsk_lifetime),
        validity: table.validity.unwrap_or(defaults.validity),
        dnskey_ttl: table.dnskey_ttl.unwrap_or(defaults.dnskey_ttl),
        propagation: table.propagation.unwrap_or(defaults.propagation),
        ds_wait: table.ds_wait.unwrap_or(defaults.ds_wait),
        cache_entries: table.cache_entries.unwrap_or(defaults.cache_entries),
        cache_bytes: table.cache_bytes.unwrap_or(defaults.cache_bytes),
    };
    // Signatures are made again once half their validity has passed, and
    // must outlive the DNSKEY RRset in caches.
    if policy.validity < Duration::from_secs(10) {
        return Err("validity: at least 10s".into());
    }
    let publish = Duration::from_secs(u64::from(policy.dnskey_ttl)) + policy.propagation;
    if split && policy.zsk_lifetime <= publish * 2 {
        return Err(format!(
            "zsk_lifetime: {}s leaves no time to publish a successor (dnskey_ttl + propagation is {}s)",
            policy.zsk_lifetime.as_secs(),
            publish.as_secs()
        ));
    }
    Ok(policy)
}

fn compile_anycast(spec: &AnycastFileSpec, pools: &[Pool]) -> Result<AnycastSpec, String> {
    if spec.addresses.is_empty() {
        return Err("`addresses` is empty".into());
    }
    if let Some(missing) = spec
        .pools
        .iter()
        .find(|name| !pools.iter().any(|p| p.name == **name))
    {
        return Err(format!("pools: no pool named `{missing}`"));
    }
    let interface = spec
        .interface
        .clone()
        .unwrap_or_else(|| crate::anycast::DEFAULT_INTERFACE.to_owned());
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
        return Err(format!("interface `{interface}` is not an interface name"));
    }
    Ok(AnycastSpec {
        addresses: spec.addresses.clone(),
        interface,
        pools: spec.pools.clone(),
        grace: spec.grace.unwrap_or(crate::anycast::DEFAULT_GRACE),
    })
}

/// The client networks a `[[latency]]` entry measures: its `network`, or
/// every network the geolocation data places in its `country`.
fn latency_networks(
    entry: &super::spec::LatencySpec,
    geo: Option<&GeoDb>,
) -> Result<Vec<ClientNet>, String> {
    match (&entry.network, &entry.country) {
        (Some(network), None) => Ok(vec![parse_exact_network(network)?]),
        (None, Some(country)) => {
            let geo = geo.ok_or("a latency entry by country needs a [geo] database")?;
            let country = country.to_ascii_uppercase();
            Ok(geo
                .networks
                .iter()
                .filter(|(_, location)| location.country.as_deref() == Some(country.as_str()))
                .map(|(network, _)| *network)
                .collect())
        }
        _ => Err("give `network` or `country`, one of them".to_owned()),
    }
}

fn index<T>(entries: &BTreeMap<Spanned<String>, T>) -> HashMap<&str, usize> {
    entries
        .keys()
        .enumerate()
        .map(|(i, name)| (name.get_ref().as_str(), i))
        .collect()
}

fn load_geo(geo: &super::spec::GeoSpec, base: &Path) -> Result<GeoDb, String> {
    match (&geo.database, &geo.csv) {
        (Some(database), None) => GeoDb::open_maxmind(&base.join(database)),
        (None, Some(csv)) => {
            let path = base.join(csv);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("geo csv {}: {e}", path.display()))?;
            GeoDb::parse_csv(&path, &text)
        }
        _ => Err("[geo] takes `database` (MaxMind) or `csv`, one of them".into()),
    }
}

fn endpoint(spec: &EndpointSpec) -> PoolEndpoint {
    match spec {
        EndpointSpec::Address(addr) => PoolEndpoint::new(*addr),
        EndpointSpec::Full(full) => PoolEndpoint {
            weight: full.weight.unwrap_or(1),
            port: full.port,
            path: full.path.clone(),
            ..PoolEndpoint::new(full.address)
        },
    }
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Route 53's default failure threshold; used for rise too.
const DEFAULT_THRESHOLD: u32 = 3;

fn compile_check(
    name: &str,
    spec: &CheckSpec,
    checks: &HashMap<&str, usize>,
) -> Result<CheckDef, String> {
    let interval = spec.interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT.min(interval));
    if interval.is_zero() || timeout.is_zero() || timeout > interval {
        return Err("interval and timeout must be above zero, timeout at most interval".into());
    }
    let port = |default: Option<u16>| {
        spec.port
            .or(default)
            .ok_or_else(|| "needs a `port`".to_owned())
    };
    let needs = |field: &Option<String>, what: &str| {
        field
            .clone()
            .ok_or_else(|| format!("a {:?} check needs `{what}`", spec.kind))
    };
    let probe = match spec.kind {
        CheckKind::Http | CheckKind::Https => {
            let tls = spec.kind == CheckKind::Https;
            let [low, high] = spec.status.unwrap_or([200, 399]);
            if low > high {
                return Err(format!("status range {low}..{high} is empty"));
            }
            Probe::Http {
                tls,
                port: port(Some(if tls { 443 } else { 80 }))?,
                path: spec.path.clone().unwrap_or_else(|| "/".into()),
                host: spec.host.clone(),
                status: low..=high,
                search: spec.search.clone(),
            }
        }
        CheckKind::Tcp => Probe::Tcp { port: port(None)? },
        CheckKind::Dns => {
            let query = needs(&spec.query, "query")?;
            let qtype = spec.qtype.as_deref().unwrap_or("A");
            Probe::Dns {
                port: port(Some(53))?,
                query: Name::from_ascii(&query).map_err(|e| format!("query `{query}`: {e}"))?,
                qtype: qtype
                    .parse()
                    .map_err(|_| format!("`{qtype}` is not a record type"))?,
                expect: spec.expect.clone(),
            }
        }
        CheckKind::Command => Probe::Command {
            command: needs(&spec.command, "command")?,
        },
        CheckKind::Calculated => {
            let names = spec
                .children
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or("a calculated check needs `children`")?;
            let children = names
                .iter()
                .map(|child| {
                    if child == name {
                        return Err("a calculated check cannot contain itself".to_owned());
                    }
                    checks
                        .get(child.as_str())
                        .copied()
                        .ok_or_else(|| format!("no check named `{child}`"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let min_healthy = spec.min_healthy.unwrap_or(children.len());
            if min_healthy == 0 || min_healthy > children.len() {
                return Err(format!("min_healthy must be 1 to {}", children.len()));
            }
            Probe::Calculated {
                children,
                min_healthy,
            }
        }
    };
    let verdict = match (spec.verdict, spec.min_fraction) {
        (Some(VerdictKind::Local), Some(_)) => {
            return Err("`min_fraction` is for a fleet verdict, not `verdict = \"local\"`".into());
        }
        (Some(VerdictKind::Local), None) => VerdictScope::Local,
        (_, Some(fraction)) if !(fraction > 0.0 && fraction <= 1.0) => {
            return Err(format!(
                "min_fraction {fraction} is not above 0 and at most 1"
            ));
        }
        (_, fraction) => VerdictScope::Fleet {
            min_fraction: fraction.unwrap_or(DEFAULT_MIN_FRACTION),
        },
    };
    Ok(CheckDef {
        name: name.to_owned(),
        probe,
        interval,
        timeout,
        rise: spec.rise.unwrap_or(DEFAULT_THRESHOLD).max(1),
        fall: spec.fall.unwrap_or(DEFAULT_THRESHOLD).max(1),
        invert: spec.invert,
        initial: spec.initial.unwrap_or_default(),
        verdict,
    })
}

/// Measured latencies: networks, region, milliseconds.
type Latencies = [(Vec<ClientNet>, String, u32)];

struct PolicyCompiler<'a> {
    pools: &'a [Pool],
    pool_index: &'a HashMap<&'a str, usize>,
    geo: Option<&'a GeoDb>,
    latency: &'a Latencies,
    branches: BranchLabels,
    service: String,
    family_v4: bool,
}

impl PolicyCompiler<'_> {
    /// The service `label`; a problem outside its policy has no path.
    fn service(&mut self, label: &str, def: &ServiceSpec) -> Result<Service, BranchProblem> {
        let record_type = match def.record_type.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            other => return Err(at(&[], format!("type must be A or AAAA, not `{other}`"))),
        };
        let mut name = Name::from_ascii(&def.name).map_err(|e| at(&[], format!("name: {e}")))?;
        name.set_fqdn(true);
        let name = WireName::from_name(&name).ok_or_else(|| at(&[], "name is too long"))?;
        self.service = label.to_owned();
        self.family_v4 = record_type == RecordType::A;
        let policy = self.policy(&def.policy, &["policy".to_owned()])?;
        Ok(Service {
            label: label.to_owned(),
            name,
            record_type,
            ttl: def.ttl,
            fail_closed: def.fail_closed,
            policy,
            signed: false,
        })
    }

    /// Compiles `spec`, the branch at `path` (for labels and errors).
    fn policy(&mut self, spec: &PolicySpec, path: &[String]) -> Result<Policy, BranchProblem> {
        let kind = match (spec.kind, &spec.pool) {
            (Some(kind), _) => kind,
            (None, Some(_)) => PolicyKind::RoundRobin,
            (None, None) => return Err(at(path, "give `kind` or `pool`")),
        };
        let at = |e: String| at(path, e);
        match kind {
            PolicyKind::Simple => self.leaf(spec, path, Pick::Every),
            PolicyKind::RoundRobin => {
                let answers = spec.answers.unwrap_or(usize::MAX);
                if answers == 0 {
                    return Err(at("answers must be at least 1".into()));
                }
                self.leaf(spec, path, Pick::Healthy { answers })
            }
            PolicyKind::Multivalue => self.leaf(
                spec,
                path,
                Pick::Healthy {
                    answers: MULTIVALUE_ANSWERS,
                },
            ),
            PolicyKind::Weighted => {
                if spec.pool.is_some() {
                    return self.leaf(spec, path, Pick::ByWeight);
                }
                let branches = self.branch_list(spec.branches.as_deref(), path, "branches")?;
                let mut out = Vec::new();
                for (i, branch) in branches.iter().enumerate() {
                    let weight = branch
                        .get_ref()
                        .weight
                        .ok_or_else(|| at(format!("branch {} needs a `weight` (0-255)", i + 1)))?;
                    out.push((weight, self.branch(branch, path, i)?));
                }
                Ok(Policy::Weighted(out))
            }
            PolicyKind::Failover => {
                let primary = spec
                    .primary
                    .as_ref()
                    .ok_or_else(|| at("needs `primary`".into()))?;
                let secondary = spec
                    .secondary
                    .as_ref()
                    .ok_or_else(|| at("needs `secondary`".into()))?;
                let mut side = |side: &Spanned<Box<PolicySpec>>, name: &str| {
                    let policy = self.policy(side.get_ref(), &join(path, name));
                    placed(side.span(), policy).map(Box::new)
                };
                Ok(Policy::Failover {
                    primary: side(primary, "primary")?,
                    secondary: side(secondary, "secondary")?,
                })
            }
            PolicyKind::Ip => {
                let branches = self.branch_list(spec.branches.as_deref(), path, "branches")?;
                let defaults = defaults(branches);
                let mut table = ClientTable::new(defaults.clone());
                for (i, branch) in branches.iter().enumerate() {
                    for cidr in branch.get_ref().cidrs.iter().flatten() {
                        // On the branch's own line.
                        let network =
                            placed(branch.span(), parse_exact_network(cidr).map_err(&at))?;
                        table.insert(network, [vec![i], defaults.clone()].concat());
                    }
                }
                self.by_client(branches, path, table)
            }
            PolicyKind::Geolocation => {
                let geo = self
                    .geo
                    .ok_or_else(|| at("needs a [geo] database".into()))?;
                let branches = self.branch_list(spec.branches.as_deref(), path, "branches")?;
                let mut table = ClientTable::new(defaults(branches));
                for (network, location) in &geo.networks {
                    let mut matches: Vec<(u8, usize)> = branches
                        .iter()
                        .enumerate()
                        .filter_map(|(i, b)| geo_specificity(b.get_ref(), location).map(|s| (s, i)))
                        .collect();
                    matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                    let matched = matches.into_iter().map(|(_, i)| i);
                    table.insert(*network, matched.chain(table.fallback().to_vec()).collect());
                }
                self.by_client(branches, path, table)
            }
            PolicyKind::Latency => {
                let regions = self.branch_list(spec.regions.as_deref(), path, "regions")?;
                let names: Vec<&str> = regions
                    .iter()
                    .map(|r| {
                        r.get_ref()
                            .region
                            .as_deref()
                            .ok_or("every latency region needs `region`")
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e: &str| at(e.into()))?;
                let mut measured: HashMap<ClientNet, Vec<(u32, usize)>> = HashMap::new();
                for (networks, region, ms) in self.latency {
                    let Some(i) = names.iter().position(|name| name == region) else {
                        continue;
                    };
                    for network in networks {
                        measured.entry(*network).or_default().push((*ms, i));
                    }
                }
                let mut table = ClientTable::new((0..regions.len()).collect());
                for (network, mut by_ms) in measured {
                    by_ms.sort_unstable();
                    table.insert(network, ranked(by_ms, regions.len()));
                }
                self.by_client(regions, path, table)
            }
            PolicyKind::Geoproximity => {
                let geo = self
                    .geo
                    .ok_or_else(|| at("needs a [geo] database".into()))?;
                let regions = self.branch_list(spec.regions.as_deref(), path, "regions")?;
                let places = regions
                    .iter()
                    .map(Spanned::get_ref)
                    .map(|r| match (r.latitude, r.longitude, r.bias.unwrap_or(0)) {
                        (Some(lat), Some(lon), bias @ -99..=99) => Ok(((lat, lon), bias)),
                        (Some(_), Some(_), _) => Err("bias must be -99 to 99"),
                        _ => Err("every geoproximity region needs `latitude` and `longitude`"),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(e.into()))?;
                let mut table = ClientTable::new((0..regions.len()).collect());
                for (network, location) in &geo.networks {
                    let Some(client) = location.coordinates else {
                        continue;
                    };
                    let mut by_distance: Vec<(f64, usize)> = places
                        .iter()
                        .enumerate()
                        .map(|(i, (place, bias))| {
                            // Route 53: biased = actual × (1 − bias/100).
                            let scale = 1.0 - f64::from(*bias) / 100.0;
                            (distance_km(client, *place) * scale, i)
                        })
                        .collect();
                    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
                    table.insert(*network, by_distance.into_iter().map(|(_, i)| i).collect());
                }
                self.by_client(regions, path, table)
            }
        }
    }

    fn branch_list<'s>(
        &self,
        list: Option<&'s [Spanned<BranchSpec>]>,
        path: &[String],
        field: &str,
    ) -> Result<&'s [Spanned<BranchSpec>], BranchProblem> {
        list.filter(|l| !l.is_empty())
            .ok_or_else(|| at(path, format!("needs `{field}`")))
    }

    fn by_client(
        &mut self,
        branches: &[Spanned<BranchSpec>],
        path: &[String],
        table: ClientTable,
    ) -> Result<Policy, BranchProblem> {
        let branches = branches
            .iter()
            .enumerate()
            .map(|(i, branch)| self.branch(branch, path, i))
            .collect::<Result<_, _>>()?;
        Ok(Policy::ByClient { table, branches })
    }

    /// The policy under a branch: its nested `policy`, or its `pool`.
    fn branch(
        &mut self,
        spanned: &Spanned<BranchSpec>,
        path: &[String],
        i: usize,
    ) -> Result<Policy, BranchProblem> {
        let branch = spanned.get_ref();
        let own = branch
            .name
            .clone()
            .or_else(|| branch.region.clone())
            .or_else(|| branch.subdivision.clone())
            .or_else(|| branch.country.clone())
            .or_else(|| branch.continent.clone())
            .or_else(|| branch.default.then(|| "default".to_owned()))
            .or_else(|| branch.pool.clone())
            .unwrap_or_else(|| format!("branch{}", i + 1));
        let path = join(path, &own);
        let policy = match (&branch.policy, &branch.pool) {
            (Some(policy), None) => self.policy(policy, &path),
            (None, Some(pool)) => self.pool_leaf(
                pool,
                &path,
                Pick::Healthy {
                    answers: usize::MAX,
                },
            ),
            _ => Err(at(&path, "give `pool` or `policy`, one of them")),
        };
        placed(spanned.span(), policy)
    }

    fn leaf(
        &mut self,
        spec: &PolicySpec,
        path: &[String],
        pick: Pick,
    ) -> Result<Policy, BranchProblem> {
        let pool = spec
            .pool
            .as_deref()
            .ok_or_else(|| at(path, "needs `pool`"))?;
        self.pool_leaf(pool, path, pick)
    }

    fn pool_leaf(
        &mut self,
        name: &str,
        path: &[String],
        pick: Pick,
    ) -> Result<Policy, BranchProblem> {
        let pool = *self
            .pool_index
            .get(name)
            .ok_or_else(|| at(path, format!("no pool named `{name}`")))?;
        if let Some(wrong) = self.pools[pool]
            .endpoints
            .iter()
            .find(|e| e.addr.is_ipv4() != self.family_v4)
        {
            return Err(at(
                path,
                format!(
                    "pool `{name}` has {} but the service is {}",
                    wrong.addr,
                    if self.family_v4 { "A" } else { "AAAA" }
                ),
            ));
        }
        // The branch's label: its path below the policy root, or the pool.
        let below_root = path.get(1..).unwrap_or_default().join("/");
        let label = if below_root.is_empty() {
            name
        } else {
            &below_root
        };
        let branch = self
            .branches
            .slot(&self.service, label)
            .map_err(|e| at(path, e))?;
        Ok(Policy::Pool { pool, pick, branch })
    }
}

fn join(path: &[String], part: &str) -> Vec<String> {
    [path, &[part.to_owned()]].concat()
}

fn defaults(branches: &[Spanned<BranchSpec>]) -> Vec<usize> {
    (0..branches.len())
        .filter(|&i| branches[i].get_ref().default)
        .collect()
}

/// Regions by measured latency first, then the unmeasured in config order.
fn ranked(by_ms: Vec<(u32, usize)>, regions: usize) -> Vec<usize> {
    let mut order: Vec<usize> = by_ms.into_iter().map(|(_, i)| i).collect();
    let unmeasured: Vec<usize> = (0..regions).filter(|i| !order.contains(i)).collect();
    order.extend(unmeasured);
    order
}

/// How specifically a geolocation branch matches a location (higher is
/// more specific), or `None`.
fn geo_specificity(branch: &BranchSpec, location: &crate::policy::Location) -> Option<u8> {
    let same = |want: &Option<String>, have: &Option<String>| match (want, have) {
        (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
        _ => false,
    };
    if branch.subdivision.is_some() {
        (same(&branch.country, &location.country)
            && same(&branch.subdivision, &location.subdivision))
        .then_some(3)
    } else if branch.country.is_some() {
        same(&branch.country, &location.country).then_some(2)
    } else if branch.continent.is_some() {
        same(&branch.continent, &location.continent).then_some(1)
    } else {
        None
    }
}
