//! Online signing's costs: signatures per second per core for each
//! algorithm (against the daemon's own unsigned answer to a DO query,
//! timed the same way in the same run), the daemon's throughput and
//! latency for DO queries to a signed zone against the same zone unsigned,
//! a health flip that re-signs 1,000 services, and the signature cache's
//! memory per RRset.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use dnslb::{
    server::{Responder, Signers, Transport},
    signer::{SigningPolicy, ZoneSigner, keyfile::KeyAlgorithm, now},
    zone::{Catalog, WireName, load_zone},
};
use dnslb_tests::{
    backend::HttpBackend,
    daemon::{Daemon, RIG_METRICS, ZoneFile, sample, scrape},
    load::{Latency, Throughput},
    netns::{Rig, SERVER_ADDR},
};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType},
};

use crate::{
    load,
    workload::{Mix, ORIGIN},
};

pub struct SigningCost {
    /// (algorithm, signatures per second on one core).
    pub per_core: Vec<(&'static str, f64)>,
    /// The daemon's answers per second, on one core, to a DO query of the
    /// zone unsigned: the reference for the signatures.
    pub unsigned_answers_per_core: f64,
    /// The same for the zone signed online, its cache warm.
    pub signed_answers_per_core: f64,
    /// (mix, signed, unsigned): the daemon's throughput for DO queries.
    pub throughput: Vec<(&'static str, Throughput, Throughput)>,
    /// (mix, signed, unsigned): latency at a fixed rate.
    pub latency: Vec<(&'static str, Latency, Latency)>,
    pub flip: Flip,
    /// The cache's own count of its bytes, per RRset cached.
    pub cache_bytes_per_rrset: f64,
    /// The daemon's resident memory grown while the cache filled, per
    /// RRset cached.
    pub rss_bytes_per_rrset: f64,
    pub cached_rrsets: u64,
    /// How many times each pair (unsigned and signed) was measured.
    pub rounds: u32,
}

/// Signed answers from the kernel: its throughput for DO queries to a
/// zone signed online against the zone unsigned (XDP attached), and a
/// large zone loaded unsigned and signed.
pub struct KernelSigning {
    /// (mix, signed, unsigned).
    pub throughput: Vec<(&'static str, Throughput, Throughput)>,
    pub unsigned_load: crate::hotload::HotLoad,
    pub signed_load: crate::hotload::HotLoad,
}

/// A health flip of 1,000 failover services.
pub struct Flip {
    pub services: usize,
    /// From the backend stopping to every service's new answer served
    /// signed.
    pub all_signed: Duration,
    /// From the backend stopping to the last answer of the old endpoint:
    /// the verdict came after it, so `all_signed` less this bounds from
    /// above the time from the verdict to every new answer signed.
    pub last_old: Duration,
    /// The longest the verdict can take (fall × interval + timeout).
    pub verdict_bound: Duration,
    /// One sweep of DO queries over the services with nothing to sign: the
    /// reference.
    pub sweep: Duration,
}

impl Flip {
    /// At most this long from the verdict to every new answer signed.
    pub fn after_verdict(&self) -> Duration {
        self.all_signed.saturating_sub(self.last_old)
    }
}

pub fn run(
    rig: &Rig,
    scratch: &Path,
    zone: &Path,
    mixes: &[&Mix],
    seconds: u32,
    dnsperf_qps: u32,
    rounds: u32,
) -> anyhow::Result<SigningCost> {
    let dir = scratch.join("signing");
    fs::create_dir_all(&dir)?;
    let window = Duration::from_secs(u64::from(seconds));
    // The machines are noisy: unsigned and signed measured in turn, the
    // pair with the median ratio kept.
    let mut pairs = Vec::new();
    let rounds = rounds.max(1);
    for _ in 0..rounds {
        let unsigned = answers_per_core(zone, None, window)?;
        let signed = answers_per_core(zone, Some(&dir.join("in-process")), window)?;
        pairs.push((signed, unsigned));
    }
    let (signed_answers_per_core, unsigned_answers_per_core) =
        median_pair(pairs, |(signed, unsigned)| signed / unsigned).context("no round")?;
    let per_core = [
        ("ECDSAP256SHA256 (13)", KeyAlgorithm::EcdsaP256Sha256),
        ("ED25519 (15)", KeyAlgorithm::Ed25519),
    ]
    .into_iter()
    .map(|(label, algorithm)| {
        Ok((
            label,
            signatures_per_second(&dir.join(label), algorithm, window)?,
        ))
    })
    .collect::<anyhow::Result<_>>()?;

    let zone_file = ZoneFile {
        origin: ORIGIN.into(),
        file: zone.to_owned(),
    };
    let key_dir = dir.join("keys").display().to_string();
    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    let mut memory: CacheMemory = (0.0, 0.0, 0);
    for mix in mixes {
        let mut pairs = Vec::new();
        for _ in 0..rounds {
            pairs.push(signed_and_unsigned(
                rig,
                (&zone_file, &key_dir),
                mix,
                (seconds, dnsperf_qps),
                false,
                &mut memory,
            )?);
        }
        // Throughput and latency each their own median: one round's flood
        // says nothing of the next dnsperf's tail.
        let rates = pairs
            .iter()
            .map(|[(signed, _), (plain, _)]| (*signed, *plain));
        let (signed_rate, plain_rate) = median_rates(rates.collect())?;
        let tails = pairs
            .into_iter()
            .map(|[(_, signed), (_, plain)]| (signed, plain));
        // Unsigned over signed, as throughput is signed over unsigned: the
        // lower middle of an even count is then the less flattering pair.
        let (signed_latency, plain_latency) = median_pair(tails.collect(), |(signed, plain)| {
            plain.p99.as_secs_f64() / signed.p99.as_secs_f64().max(f64::MIN_POSITIVE)
        })
        .context("no round")?;
        throughput.push((mix.label, signed_rate, plain_rate));
        latency.push((mix.label, signed_latency, plain_latency));
    }
    let flip = health_flip(rig, &dir, 1_000)?;
    Ok(SigningCost {
        per_core,
        unsigned_answers_per_core,
        signed_answers_per_core,
        throughput,
        latency,
        flip,
        cache_bytes_per_rrset: memory.0,
        rss_bytes_per_rrset: memory.1,
        cached_rrsets: memory.2,
        rounds,
    })
}

/// What the cache holds after a mix: (its bytes per RRset, resident memory
/// grown per RRset, RRsets).
type CacheMemory = (f64, f64, u64);

/// One round of `mix`: the daemon (with XDP when `xdp`) serving the zone
/// signed (keys in `key_dir`), then unsigned, each its throughput (the
/// flood) and latency (dnsperf at `dnsperf_qps`); the signed daemon's
/// cache memory kept in `memory` when it holds more RRsets than before.
fn signed_and_unsigned(
    rig: &Rig,
    (zone_file, key_dir): (&ZoneFile, &str),
    mix: &Mix,
    (seconds, dnsperf_qps): (u32, u32),
    xdp: bool,
    memory: &mut CacheMemory,
) -> anyhow::Result<[(Throughput, Latency); 2]> {
    let mut measured = Vec::new();
    for signed in [true, false] {
        // Room in the kernel for every name of the workload's zone, as
        // the throughput benchmark gives it.
        let mut extra = vec!["--hot-capacity", "1100000"];
        if signed {
            extra.extend(["--sign", ORIGIN, "--key-dir", key_dir]);
        }
        let daemon = Daemon::start_on_rig(rig, zone_file, xdp, &extra)?;
        let pid = daemon.pid();
        let rss_before = rss(pid)?;
        // Warm: the mix sent until every name in it has its signatures
        // cached (the cache stops growing); bounded.
        let mut cached = None;
        for _ in 0..20 {
            load::throughput(rig, mix, 1)?;
            if !signed {
                break;
            }
            let now_cached = cache_entries(rig)?;
            if cached == Some(now_cached) {
                break;
            }
            cached = Some(now_cached);
        }
        let flooded = load::throughput(rig, mix, seconds)
            .map_err(|error| error.context(daemon.log_text()))?;
        let _pass = rig.attach_client_pass_through()?;
        let lat = load::dnsperf_latency(rig, mix, seconds, dnsperf_qps)?;
        if signed {
            let entries = cache_entries(rig)?;
            let bytes = signer_series(rig, "dnslb_dnssec_signature_cache_bytes")?;
            let grown = rss(pid)?.saturating_sub(rss_before);
            if entries > memory.2 {
                *memory = (
                    bytes as f64 / entries as f64,
                    grown as f64 / entries as f64,
                    entries,
                );
            }
        }
        measured.push((flooded.throughput, lat));
        drop(daemon);
    }
    let [signed, unsigned]: [(Throughput, Latency); 2] = measured
        .try_into()
        .map_err(|_| anyhow::anyhow!("two runs"))?;
    Ok([signed, unsigned])
}

/// The kernel's throughput for DO queries of each of `mixes` to the zone
/// signed online against the same zone unsigned, XDP attached: (mix,
/// signed, unsigned), measured in turn `rounds` times, the median pair.
pub fn kernel_throughput(
    rig: &Rig,
    scratch: &Path,
    zone: &Path,
    mixes: &[&Mix],
    (seconds, dnsperf_qps, rounds): (u32, u32, u32),
) -> anyhow::Result<Vec<(&'static str, Throughput, Throughput)>> {
    let dir = scratch.join("kernel-signing");
    fs::create_dir_all(&dir)?;
    let zone_file = ZoneFile {
        origin: ORIGIN.into(),
        file: zone.to_owned(),
    };
    let key_dir = dir.join("keys").display().to_string();
    let mut memory: CacheMemory = (0.0, 0.0, 0);
    let mut throughput = Vec::new();
    for mix in mixes {
        let mut pairs = Vec::new();
        for _ in 0..rounds.max(1) {
            let [(signed, _), (plain, _)] = signed_and_unsigned(
                rig,
                (&zone_file, &key_dir),
                mix,
                (seconds, dnsperf_qps),
                true,
                &mut memory,
            )?;
            pairs.push((signed, plain));
        }
        let (signed, plain) = median_rates(pairs)?;
        throughput.push((mix.label, signed, plain));
    }
    Ok(throughput)
}

/// Of (signed, unsigned) throughput pairs, the one whose ratio is the
/// median.
fn median_rates(pairs: Vec<(Throughput, Throughput)>) -> anyhow::Result<(Throughput, Throughput)> {
    median_pair(pairs, |(signed, plain)| {
        signed.replies_per_second / plain.replies_per_second
    })
    .context("no round")
}

/// Of `pairs`, the one whose `ratio` is the median.
fn median_pair<T>(mut pairs: Vec<T>, ratio: impl Fn(&T) -> f64) -> Option<T> {
    pairs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    // The lower of two middles: an even count shows the less flattering.
    let middle = pairs.len().saturating_sub(1) / 2;
    pairs.into_iter().nth(middle)
}

/// A series of the signed zone's signer, from the rig daemon's metrics.
fn signer_series(rig: &Rig, name: &str) -> anyhow::Result<u64> {
    let metrics = scrape(&rig.server, RIG_METRICS)?;
    Ok(sample(&metrics, &format!("{name}{{zone=\"{ORIGIN}.\"}}")).unwrap_or(0))
}

fn cache_entries(rig: &Rig) -> anyhow::Result<u64> {
    signer_series(rig, "dnslb_dnssec_signature_cache_entries")
}

/// A DO query for `name`'s A records.
fn do_query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    query.edns = Some(edns);
    Ok(query.to_vec()?)
}

/// The daemon's responder answering DO queries for the zone as its
/// server does (`Responder::respond`), per second on this thread:
/// unsigned, or signed with keys in `key_dir` (the cache warmed first).
fn answers_per_core(zone: &Path, key_dir: Option<&Path>, window: Duration) -> anyhow::Result<f64> {
    let origin = Name::from_ascii(format!("{ORIGIN}."))?;
    let mut loaded = load_zone(&origin, zone)?;
    let mut signers = Signers::default();
    if let Some(key_dir) = key_dir {
        loaded.sign_online();
        let signer = ZoneSigner::open(&origin, SigningPolicy::default(), key_dir, None, now())?;
        signers.insert(loaded.origin().clone(), Arc::new(signer));
    }
    let mut catalog = Catalog::default();
    catalog.insert(loaded);
    let responder = Responder::new(catalog, 1232);
    responder.set_signers(signers);
    let queries: Vec<Vec<u8>> = (0..1000)
        .map(|i| do_query(&format!("h{i}.{ORIGIN}.")))
        .collect::<anyhow::Result<_>>()?;
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for query in &queries {
        responder.respond(query, client, Transport::Udp);
    }
    let started = Instant::now();
    let mut answered = 0u64;
    while started.elapsed() < window {
        for query in &queries {
            if responder.respond(query, client, Transport::Udp).is_some() {
                answered += 1;
            }
        }
    }
    Ok(answered as f64 / started.elapsed().as_secs_f64())
}

/// Signatures made per second on this thread: a new RRset each time, so
/// that none comes from the cache.
fn signatures_per_second(
    key_dir: &Path,
    algorithm: KeyAlgorithm,
    window: Duration,
) -> anyhow::Result<f64> {
    let origin = Name::from_ascii(format!("{ORIGIN}."))?;
    let policy = SigningPolicy {
        algorithm,
        cache_entries: 1,
        ..SigningPolicy::default()
    };
    let signer = ZoneSigner::open(&origin, policy, key_dir, None, now())?;
    let owner = Name::from_ascii(format!("www.{ORIGIN}."))?;
    let owner_wire = WireName::from_name(&owner).context("a name")?;
    let started = Instant::now();
    let mut made = 0u64;
    let mut i = 0u32;
    while started.elapsed() < window {
        for _ in 0..100 {
            i = i.wrapping_add(1);
            let rdatas = [RData::A(Ipv4Addr::from(i).into())];
            made += signer
                .sign(
                    &owner,
                    owner_wire.as_bytes(),
                    RecordType::A,
                    300,
                    &rdatas,
                    now(),
                )
                .len() as u64;
        }
    }
    ensure!(made > 0, "no signatures made");
    Ok(made as f64 / started.elapsed().as_secs_f64())
}

fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        .context("no VmRSS")?
        * 1024)
}

/// 1,000 failover services in the signed zone, all with the same primary
/// endpoint: it stops, and each service's new answer must be signed. Timed
/// from the stop until a sweep of DO queries finds every service answering
/// its secondary with an RRSIG.
fn health_flip(rig: &Rig, dir: &Path, services: usize) -> anyhow::Result<Flip> {
    const INTERVAL_MS: u64 = 100;
    const FALL: u64 = 2;
    const TIMEOUT_MS: u64 = 50;
    let primary = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 31).into(), 8080);
    let secondary = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 32).into(), 8080);
    let primary_backend = HttpBackend::start(&rig.server, primary)?;
    let _secondary_backend = HttpBackend::start(&rig.server, secondary)?;
    let zone = dir.join("flip.zone");
    fs::write(
        &zone,
        format!(
            "$TTL 60\n@ SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ NS ns1\nns1 A {SERVER_ADDR}\n"
        ),
    )?;
    let mut policy = format!(
        "[[zone]]\norigin = \"{ORIGIN}.\"\nfile = \"{}\"\ndnssec = \"online\"\n\n\
         [check.web]\nkind = \"http\"\npath = \"/health\"\nport = 8080\nsearch = \"OK\"\n\
         interval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\nrise = 2\nfall = {FALL}\n\n\
         [pool.primary]\ncheck = \"web\"\nendpoints = [\"{}\"]\n\
         [pool.secondary]\ncheck = \"web\"\nendpoints = [\"{}\"]\n",
        zone.display(),
        primary.ip(),
        secondary.ip()
    );
    for i in 0..services {
        policy.push_str(&format!(
            "\n[service.s{i}]\nname = \"s{i}.{ORIGIN}.\"\nttl = 1\n\
             policy = {{ kind = \"failover\", primary = {{ pool = \"primary\" }}, secondary = {{ pool = \"secondary\" }} }}\n"
        ));
    }
    let config = dir.join("flip.toml");
    fs::write(&config, policy)?;
    let config = config.display().to_string();
    let key_dir = dir.join("flip-keys").display().to_string();
    let daemon = Daemon::start_serving(
        &rig.server,
        None,
        &["--config", &config, "--key-dir", &key_dir],
    )?;
    let queries: Vec<Vec<u8>> = (0..services)
        .map(|i| do_query(&format!("s{i}.{ORIGIN}.")))
        .collect::<anyhow::Result<_>>()?;
    // A sweep: how many services answer `wanted`, signed, and when one
    // last answered anything else.
    let sweep = |wanted: Ipv4Addr| -> anyhow::Result<(usize, Option<Instant>)> {
        let queries = queries.clone();
        rig.client
            .run(move || -> anyhow::Result<(usize, Option<Instant>)> {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut buffer = [0u8; 4096];
                let mut signed = 0;
                let mut last_other = None;
                for query in &queries {
                    socket.send_to(query, (SERVER_ADDR, 53))?;
                    let len = socket.recv(&mut buffer)?;
                    let answer = Message::from_vec(&buffer[..len])?;
                    let addrs: Vec<Ipv4Addr> = answer
                        .answers
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(a.0),
                            _ => None,
                        })
                        .collect();
                    let has_rrsig = answer
                        .answers
                        .iter()
                        .any(|r| r.record_type() == RecordType::RRSIG);
                    if addrs != [wanted] {
                        last_other = Some(Instant::now());
                    } else if has_rrsig {
                        signed += 1;
                    }
                }
                Ok((signed, last_other))
            })?
    };
    let IpAddr::V4(before) = primary.ip() else {
        anyhow::bail!("an IPv4 primary");
    };
    let IpAddr::V4(after) = secondary.ip() else {
        anyhow::bail!("an IPv4 secondary");
    };
    let settle = Instant::now() + Duration::from_secs(10);
    while sweep(before)?.0 < services {
        ensure!(
            Instant::now() < settle,
            "the primary is not answered:\n{}",
            daemon.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // The reference: a sweep with nothing new to sign.
    let started = Instant::now();
    sweep(before)?;
    let reference = started.elapsed();
    primary_backend.stop();
    let stopped = Instant::now();
    let mut last_old = stopped;
    // Bounded: the verdict comes within a second; ten are allowed.
    loop {
        let (signed, last_other) = sweep(after)?;
        last_old = last_other.map_or(last_old, |at| at.max(last_old));
        if signed == services {
            break;
        }
        ensure!(
            stopped.elapsed() < Duration::from_secs(10),
            "not every service answers its secondary:\n{}",
            daemon.log_text()
        );
    }
    let all_signed = stopped.elapsed();
    drop(daemon);
    Ok(Flip {
        services,
        all_signed,
        last_old: last_old.duration_since(stopped),
        verdict_bound: Duration::from_millis(FALL * INTERVAL_MS + TIMEOUT_MS),
        sweep: reference,
    })
}
