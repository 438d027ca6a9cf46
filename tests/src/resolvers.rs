//! Real recursive resolvers (unbound, BIND, Knot Resolver, PowerDNS
//! Recursor) run in a test namespace, each with its own defaults for what
//! it sends upstream (EDNS, DO, cookies, Client Subnet), forwarding zones to
//! dnslb: some over IPv4, some over IPv6. Configured from here for the
//! end-to-end test and the benchmark.

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};

use crate::{
    daemon::{Daemon, RIG_METRICS, ZoneFile, sample, scrape},
    netns::{Netns, Rig, SERVER_ADDR, SERVER_ADDR6},
    process::Process,
};

/// The resolvers the tests drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolverKind {
    Unbound,
    Bind,
    KnotResolver,
    PowerDns,
}

/// A zone the resolver sends to dnslb at `server` (port 53); with a trust
/// anchor, the resolver validates its answers from that key.
pub struct Forward<'a> {
    pub zone: &'a str,
    pub server: IpAddr,
    pub trust_anchor: Option<&'a TrustAnchor>,
}

/// A zone's key-signing key, as each resolver takes a trust anchor.
pub struct TrustAnchor {
    /// The DNSKEY's algorithm number.
    pub algorithm: u8,
    /// The public key, base64.
    pub key: String,
    /// The DS record's data (`TAG ALGORITHM DIGEST-TYPE DIGEST`), for the
    /// resolvers that take a DS.
    pub ds: String,
}

impl ResolverKind {
    pub const ALL: [ResolverKind; 4] = [
        ResolverKind::Unbound,
        ResolverKind::Bind,
        ResolverKind::KnotResolver,
        ResolverKind::PowerDns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ResolverKind::Unbound => "unbound",
            ResolverKind::Bind => "BIND named",
            ResolverKind::KnotResolver => "Knot Resolver (kresd)",
            ResolverKind::PowerDns => "PowerDNS Recursor",
        }
    }

    /// Writes the configuration into `dir` and returns the command that
    /// runs the resolver in the foreground on 127.0.0.1@`port`.
    fn command(
        self,
        netns: &Netns,
        dir: &Path,
        port: u16,
        forwards: &[Forward],
    ) -> anyhow::Result<Command> {
        fs::create_dir_all(dir)?;
        let dir_text = dir.display();
        let lines =
            |line: &dyn Fn(&Forward) -> String| forwards.iter().map(line).collect::<String>();
        let anchored = |line: &dyn Fn(&Forward, &TrustAnchor) -> String| {
            forwards
                .iter()
                .filter_map(|f| Some(line(f, f.trust_anchor?)))
                .collect::<String>()
        };
        let validating = forwards.iter().any(|f| f.trust_anchor.is_some());
        let path = |file: &str| dir.join(file).into_os_string();
        let (file, config, program, args): (&str, String, &str, Vec<std::ffi::OsString>) =
            match self {
                // The validator stays on, as unbound ships it: that is what
                // makes it ask with DO. No trust anchor is configured and the
                // zones are insecure, so nothing fails validation. `test.` is
                // one of unbound's built-in empty zones (RFC 6761); lifted here.
                ResolverKind::Unbound => (
                    "unbound.conf",
                    format!(
                        "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-ip6: yes\n    \
                     username: \"\"\n    chroot: \"\"\n    directory: \"{dir_text}\"\n    pidfile: \"\"\n    \
                     use-syslog: no\n    logfile: \"\"\n    verbosity: 1\n    module-config: \"validator iterator\"\n    \
                     aggressive-nsec: yes\n    \
                     access-control: 127.0.0.0/8 allow\n    local-zone: \"test.\" nodefault\n{}\
                     remote-control:\n    control-enable: no\n{}",
                        anchored(&|f, anchor| format!(
                            "    trust-anchor: \"{}. DNSKEY 257 3 {} {}\"\n",
                            f.zone, anchor.algorithm, anchor.key
                        )),
                        lines(&|f| format!(
                            "forward-zone:\n    name: \"{}\"\n    forward-addr: {}\n",
                            f.zone, f.server
                        ))
                    ),
                    "unbound",
                    vec!["-d".into(), "-c".into(), path("unbound.conf")],
                ),
                // BIND's defaults send DO and a DNS cookie to every server.
                ResolverKind::Bind => (
                    "named.conf",
                    format!(
                        "options {{\n  directory \"{dir_text}\";\n  pid-file none;\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
                     listen-on-v6 {{ none; }};\n  recursion yes;\n  allow-query {{ any; }};\n  dnssec-validation {};\n}};\n\
                     controls {{ }};\n{}{}",
                        if validating { "yes" } else { "no" },
                        anchored(&|f, anchor| format!(
                            "trust-anchors {{ {}. static-key 257 3 {} \"{}\"; }};\n",
                            f.zone, anchor.algorithm, anchor.key
                        )),
                        lines(&|f| format!(
                            "zone \"{}\" {{ type forward; forward only; forwarders {{ {}; }}; }};\n",
                            f.zone, f.server
                        ))
                    ),
                    "named",
                    vec![
                        "-g".into(),
                        "-u".into(),
                        "root".into(),
                        "-c".into(),
                        path("named.conf"),
                    ],
                ),
                // kresd validates (so asks with DO); the test zones sit under a
                // negative trust anchor, as an operator marks a private TLD.
                ResolverKind::KnotResolver => (
                    "kresd.conf",
                    format!(
                        "net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})\n{}{}",
                        match validating {
                            // Only the zones without an anchor are insecure.
                            true => format!(
                                "trust_anchors.set_insecure({{ {} }})\n{}",
                                forwards
                                    .iter()
                                    .filter(|f| f.trust_anchor.is_none())
                                    .map(|f| format!("'{}'", f.zone))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                anchored(&|f, anchor| format!(
                                    "trust_anchors.add('{}. DNSKEY 257 3 {} {}')\n",
                                    f.zone, anchor.algorithm, anchor.key
                                ))
                            ),
                            false => "trust_anchors.set_insecure({ 'test' })\n".to_owned(),
                        },
                        lines(&|f| format!(
                            "policy.add(policy.suffix(policy.FORWARD({{ '{}' }}), {{ todname('{}.') }}))\n",
                            f.server, f.zone
                        ))
                    ),
                    "kresd",
                    vec![
                        "-n".into(),
                        "-c".into(),
                        path("kresd.conf"),
                        dir.as_os_str().to_owned(),
                    ],
                ),
                // pdns-recursor's default `dnssec=process` asks with DO; the
                // allow list makes it send Client Subnet to our zones.
                ResolverKind::PowerDns => {
                    let zones: Vec<String> = forwards
                        .iter()
                        .map(|forward| match forward.server {
                            IpAddr::V4(v4) => format!("{}={v4}", forward.zone),
                            IpAddr::V6(v6) => format!("{}=[{v6}]:53", forward.zone),
                        })
                        .collect();
                    let allow: Vec<&str> = forwards.iter().map(|forward| forward.zone).collect();
                    // With anchors: `dnssec=validate`, the anchors (as DS)
                    // in the Lua configuration.
                    fs::write(
                        dir.join("recursor.lua"),
                        anchored(&|f, anchor| format!("addTA('{}', '{}')\n", f.zone, anchor.ds)),
                    )?;
                    (
                        "recursor.conf",
                        format!(
                            "local-address=127.0.0.1\nlocal-port={port}\nallow-from=127.0.0.0/8\n\
                         forward-zones={}\nquery-local-address=0.0.0.0, ::\ndnssec={}\n\
                         edns-subnet-allow-list={}\nsocket-dir={dir_text}\nlua-config-file={}\n",
                            zones.join(", "),
                            if validating { "validate" } else { "process" },
                            allow.join(", "),
                            dir.join("recursor.lua").display()
                        ),
                        "pdns_recursor",
                        vec![
                            format!("--config-dir={dir_text}").into(),
                            "--daemon=no".into(),
                            "--disable-syslog".into(),
                        ],
                    )
                }
            };
        fs::write(dir.join(file), config)?;
        let mut command = netns.command(program);
        command.args(args);
        Ok(command)
    }
}

impl TrustAnchor {
    /// The key-signing key dnslb keeps in `key_dir` (a combined key or a
    /// KSK: the `.key` file with flags 257) for `origin` (written without
    /// its final dot), or for the one zone there; with `wrong`, a key of
    /// the same length with which nothing validates.
    pub fn in_key_dir(
        key_dir: &Path,
        origin: Option<&str>,
        wrong: bool,
    ) -> anyhow::Result<TrustAnchor> {
        let mut found = Vec::new();
        for entry in fs::read_dir(key_dir)? {
            let path = entry?.path();
            let of_origin = origin.is_none_or(|origin| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with(&format!("K{origin}.+")))
            });
            if of_origin && path.extension().is_some_and(|e| e == "key") {
                let text = fs::read_to_string(&path)?;
                if text.lines().any(|line| line.contains("DNSKEY 257 ")) {
                    found.push((path, text));
                }
            }
        }
        let [(path, text)] = found.as_slice() else {
            anyhow::bail!(
                "{} key-signing keys in {}, not one",
                found.len(),
                key_dir.display()
            );
        };
        let mut dsfromkey = Command::new("dnssec-dsfromkey");
        dsfromkey.arg("-2").arg(path);
        TrustAnchor::of(text, dsfromkey, wrong)
    }

    /// The anchor of the DNSKEY with flags 257 in `text`, its DS as
    /// `dsfromkey` prints it.
    pub fn of(text: &str, mut dsfromkey: Command, wrong: bool) -> anyhow::Result<TrustAnchor> {
        let (algorithm, key) = text
            .lines()
            .filter(|line| !line.starts_with(';'))
            .find_map(|line| {
                let (_, rest) = line.split_once("DNSKEY")?;
                let mut words = rest.split_whitespace();
                (words.next()? == "257" && words.next()? == "3").then_some(())?;
                let algorithm: u8 = words.next()?.parse().ok()?;
                Some((algorithm, words.collect::<String>()))
            })
            .ok_or_else(|| anyhow::anyhow!("no key-signing key"))?;
        let output = dsfromkey.output()?;
        let ds = String::from_utf8_lossy(&output.stdout)
            .split_once(" DS ")
            .map(|(_, ds)| ds.trim().to_owned())
            .ok_or_else(|| anyhow::anyhow!("dnssec-dsfromkey gave no DS (install bind9-utils)"))?;
        Ok(match wrong {
            true => TrustAnchor {
                algorithm,
                key: another_key(&key),
                ds: format!(
                    "{}{}",
                    &ds[..ds.len() - 1],
                    if ds.ends_with('0') { '1' } else { '0' }
                ),
            },
            false => TrustAnchor { algorithm, key, ds },
        })
    }
}

/// `key` (base64) with its first letter changed: a key of the same
/// length that is another.
fn another_key(key: &str) -> String {
    let first = key.chars().next().unwrap_or('A');
    let other = if first == 'A' { 'B' } else { 'A' };
    format!("{other}{}", &key[first.len_utf8()..])
}

/// A running resolver; stopped on drop.
pub struct Resolver {
    pub kind: ResolverKind,
    pub port: u16,
    /// Whether it has a trust anchor, and so is asked for the AD bit.
    validating: bool,
    process: Process,
}

impl Resolver {
    /// Starts `kind` in `netns`, listening on 127.0.0.1@`port`, and waits
    /// until it answers (a query for the first zone's apex SOA).
    pub fn start(
        kind: ResolverKind,
        netns: &Netns,
        dir: &Path,
        port: u16,
        forwards: &[Forward],
    ) -> anyhow::Result<Resolver> {
        let command = kind.command(netns, dir, port, forwards)?;
        let log = dir.join("resolver.log");
        let process = Process::spawn(command, log)
            .with_context(|| format!("starting {} (cargo xtask setup installs it)", kind.name()))?;
        let mut resolver = Resolver {
            kind,
            port,
            validating: forwards.iter().any(|f| f.trust_anchor.is_some()),
            process,
        };
        let probe = forwards.first().map_or("test.", |forward| forward.zone);
        let deadline = Instant::now() + Duration::from_secs(20);
        while resolver.resolve(netns, probe, RecordType::SOA)?.is_none() {
            if let Some(status) = resolver.process.exited()? {
                bail!(
                    "{} exited with {status}:\n{}",
                    kind.name(),
                    resolver.process.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not answer:\n{}",
                    kind.name(),
                    resolver.process.log_text()
                );
            }
        }
        Ok(resolver)
    }

    /// Resolves `name`/`record_type` through this resolver from inside
    /// `netns`; `None` when it does not answer within two seconds.
    pub fn resolve(
        &self,
        netns: &Netns,
        name: &str,
        record_type: RecordType,
    ) -> anyhow::Result<Option<Message>> {
        let mut query = Message::query();
        query.metadata.id = query_id(name, record_type);
        query.metadata.recursion_desired = true;
        // A validating resolver is asked for the AD bit, which it sets on
        // validated answers only when asked (RFC 6840 §5.7). Others are
        // not: asked, PowerDNS Recursor validates (`dnssec=process`), and
        // the test zones have no anchor.
        query.metadata.authentic_data = self.validating;
        query.add_query(Query::query(Name::from_ascii(name)?, record_type));
        let request = query.to_vec()?;
        let port = self.port;
        netns.run(move || -> anyhow::Result<Option<Message>> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            socket.send_to(&request, ("127.0.0.1", port))?;
            let mut buffer = [0u8; 4096];
            match socket.recv(&mut buffer) {
                Ok(len) => Ok(Some(Message::from_vec(&buffer[..len])?)),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(None)
                }
                Err(error) => Err(error.into()),
            }
        })?
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}

/// A query ID that differs between queries of one test (no randomness
/// needed: one query is in flight at a time).
fn query_id(name: &str, record_type: RecordType) -> u16 {
    let sum = name.bytes().fold(u16::from(record_type), |acc, byte| {
        acc.rotate_left(5) ^ u16::from(byte)
    });
    sum | 1
}

/// The zones the resolvers reach dnslb for: the first over IPv4, the
/// second over IPv6.
pub const ZONES: [&str; 2] = ["v4.test", "v6.test"];

/// How many of a resolver's queries for hot names the kernel answered.
pub struct Share {
    pub kind: ResolverKind,
    /// Whether the zones were signed and the resolver validated.
    pub validating: bool,
    pub by_xdp: u64,
    pub hot_queries: u64,
}

impl Share {
    pub fn fraction(&self) -> f64 {
        self.by_xdp as f64 / self.hot_queries.max(1) as f64
    }
}

fn zone_text(origin: &str, names: u8) -> String {
    let mut text = format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A {SERVER_ADDR}\n"
    );
    for i in 0..names {
        text.push_str(&format!(
            "host{i} A 198.18.40.{i}\nhost{i} AAAA 2001:db8:40::{i:x}\n"
        ));
    }
    text
}

/// Kernel counters: queries answered, and queries passed for a reason a
/// hot name can have (an EDNS form, size or shape the kernel does not
/// answer). Passes for names that are not hot, or for other types, are not
/// hot-name queries.
fn kernel_counts(rig: &Rig) -> anyhow::Result<(u64, u64)> {
    let text = scrape(&rig.server, RIG_METRICS)?;
    let get = |series: &str| sample(&text, series).unwrap_or(0);
    let passed = ["edns", "too_big", "unsupported", "malformed", "unsigned"]
        .iter()
        .map(|reason| get(&format!("dnslb_xdp_passed_total{{reason=\"{reason}\"}}")))
        .sum();
    Ok((get("dnslb_queries_total{path=\"xdp\"}"), passed))
}

/// Serves [`ZONES`] (`names` hot names each, A and AAAA) from dnslb with
/// XDP on `rig` (IPv6 added), then has every resolver resolve every name
/// and type in both zones, checking each answer, and returns how many of
/// each resolver's hot-name queries the kernel answered. With `signed`,
/// dnslb signs both zones online and the resolvers validate, with its
/// keys as their trust anchors: every answer must be validated (AD).
pub fn measure_shares(
    rig: &Rig,
    dir: &Path,
    names: u8,
    signed: bool,
) -> anyhow::Result<Vec<Share>> {
    rig.add_ipv6()?;
    let _pass = rig.attach_client_pass_through()?;
    fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for origin in ZONES {
        let file = dir.join(format!("{origin}.zone"));
        fs::write(&file, zone_text(origin, names))?;
        files.push(file);
    }
    let first = ZoneFile {
        origin: ZONES[0].to_string(),
        file: files[0].clone(),
    };
    let second = format!("--zone={}={}", ZONES[1], files[1].display());
    let key_dir = dir.join("keys");
    let key_dir_arg = format!("--key-dir={}", key_dir.display());
    let mut args = vec![second.as_str()];
    let signing = ZONES.map(|zone| format!("--sign={zone}"));
    if signed {
        args.extend(signing.iter().map(String::as_str));
        args.push(&key_dir_arg);
    }
    let daemon = Daemon::start_on_rig(rig, &first, true, &args)?;
    let anchors = match signed {
        true => ZONES
            .map(|zone| TrustAnchor::in_key_dir(&key_dir, Some(zone), false).map(Some))
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?,
        false => vec![None, None],
    };
    let forwards = [
        Forward {
            zone: ZONES[0],
            server: IpAddr::V4(SERVER_ADDR.parse()?),
            trust_anchor: anchors[0].as_ref(),
        },
        Forward {
            zone: ZONES[1],
            server: IpAddr::V6(SERVER_ADDR6.parse()?),
            trust_anchor: anchors[1].as_ref(),
        },
    ];
    let mut shares = Vec::new();
    for (n, kind) in ResolverKind::ALL.into_iter().enumerate() {
        let resolver = Resolver::start(
            kind,
            &rig.client,
            &dir.join(format!("resolver-{n}")),
            5300 + n as u16,
            &forwards,
        )?;
        let (xdp_before, passed_before) = kernel_counts(rig)?;
        for zone in ZONES {
            for i in 0..names {
                for record_type in [RecordType::A, RecordType::AAAA] {
                    check_answer(&resolver, &rig.client, zone, i, record_type)?;
                }
            }
        }
        let (xdp_after, passed_after) = kernel_counts(rig)?;
        let by_xdp = xdp_after - xdp_before;
        shares.push(Share {
            kind,
            validating: signed,
            by_xdp,
            hot_queries: by_xdp + passed_after - passed_before,
        });
    }
    drop(daemon);
    Ok(shares)
}

/// Resolves host`i` in `zone` through `resolver` and checks the address.
fn check_answer(
    resolver: &Resolver,
    netns: &Netns,
    zone: &str,
    i: u8,
    record_type: RecordType,
) -> anyhow::Result<()> {
    let name = format!("host{i}.{zone}.");
    let what = format!("{}: {name} {record_type}", resolver.kind.name());
    let answer = resolver
        .resolve(netns, &name, record_type)?
        .with_context(|| format!("{what}: no answer\n{}", resolver.log_text()))?;
    ensure!(
        answer.metadata.response_code == ResponseCode::NoError,
        "{what}: {answer:?}"
    );
    ensure!(
        answer.metadata.authentic_data || !resolver.validating,
        "{what}: not validated: {answer:?}\n{}",
        resolver.log_text()
    );
    let got: BTreeSet<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    let expected = match record_type {
        RecordType::A => IpAddr::V4(Ipv4Addr::new(198, 18, 40, i)),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, u16::from(i))),
    };
    ensure!(got == [expected].into(), "{what}: got {got:?}");
    Ok(())
}
