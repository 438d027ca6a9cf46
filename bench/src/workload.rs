//! The benchmark's zone and query mixes, generated afresh each run.

use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use dnslb_tests::load::flood::Edns;

pub const ORIGIN: &str = "bench.test";
/// The name of the weighted mix: three addresses in the zone.
pub const WEIGHTED_NAME: &str = "weighted";

/// A query file for the flood and dnsperf ("name type" per line), and how
/// it is sent.
pub struct Mix {
    pub label: &'static str,
    pub queries: PathBuf,
    /// The OPT record every query carries, if any: the same for the flood
    /// and for dnsperf.
    pub edns: Edns,
    /// Queries only the weighted name.
    pub weighted: bool,
    /// Shaped as a resolver's queries (EDNS options, IPv6, AAAA): run by
    /// the XDP responders only.
    pub resolver_shaped: bool,
    /// Sent to the server's IPv6 address.
    pub ipv6: bool,
}

pub struct Workload {
    pub zone: PathBuf,
    pub mixes: Vec<Mix>,
}

/// Deterministic xorshift, so every run draws the same names.
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws(seed | 1)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// The address of hot name `i`: spread over 198.18.0.0/15 (answer data
/// only; nothing is ever sent to these).
fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i % 131_072) as u32)
}

/// Writes a zone with `hot_names` single-address names `h<i>` and `www`
/// (three IPv4 and three IPv6 addresses, round robin) to `dir`.
pub fn write_zone(dir: &Path, hot_names: usize) -> anyhow::Result<PathBuf> {
    let mut zone = String::with_capacity(hot_names * 40 + 512);
    zone.push_str(&format!(
        "$ORIGIN {ORIGIN}.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ NS ns1\nns1 A 198.18.0.2\n\
         www A 198.18.10.1\nwww A 198.18.10.2\nwww A 198.18.10.3\n\
         www AAAA 2001:db8:10::1\nwww AAAA 2001:db8:10::2\nwww AAAA 2001:db8:10::3\n\
         {WEIGHTED_NAME} A 198.18.11.1\n{WEIGHTED_NAME} A 198.18.11.2\n{WEIGHTED_NAME} A 198.18.11.3\n"
    ));
    for i in 0..hot_names {
        let _ = writeln!(zone, "h{i} A {}", address(i));
    }
    let path = dir.join(format!("{ORIGIN}.zone"));
    fs::write(&path, zone)?;
    Ok(path)
}

/// The zone and the query mixes: one hot name, and the resolver-shaped
/// mixes on it; `full` adds the many-names, weighted and miss mixes.
/// `cookie` is a valid client and server cookie for the client's address
/// (what BIND sends once it has talked to the server).
pub fn generate(
    dir: &Path,
    hot_names: usize,
    full: bool,
    cookie: &[u8],
) -> anyhow::Result<Workload> {
    fs::create_dir_all(dir)?;
    let zone = write_zone(dir, hot_names)?;
    let mut mixes = vec![mix(dir, "one hot name", "one", 1, |_| {
        format!("www.{ORIGIN} A")
    })?];
    let resolver_mix = |label, file, line: &str| -> anyhow::Result<Mix> {
        let mut mix = mix(dir, label, file, 1, |_| line.to_string())?;
        mix.resolver_shaped = true;
        Ok(mix)
    };
    let mut dnssec_ok = resolver_mix(
        "one hot name, DO (as unbound)",
        "do",
        &format!("www.{ORIGIN} A"),
    )?;
    dnssec_ok.edns.dnssec_ok = true;
    mixes.push(dnssec_ok);
    let mut ipv6 = resolver_mix("one hot name over IPv6", "ipv6", &format!("www.{ORIGIN} A"))?;
    ipv6.ipv6 = true;
    mixes.push(ipv6);
    mixes.push(resolver_mix(
        "one hot name, AAAA",
        "aaaa",
        &format!("www.{ORIGIN} AAAA"),
    )?);
    let mut bind = resolver_mix("DO + cookie (as BIND)", "bind", &format!("www.{ORIGIN} A"))?;
    bind.edns = Edns {
        dnssec_ok: true,
        cookie: Some(cookie.to_vec()),
        client_subnet: None,
    };
    mixes.push(bind);
    let mut subnet = resolver_mix("Client Subnet /24", "subnet", &format!("www.{ORIGIN} A"))?;
    subnet.edns.client_subnet = Some((IpAddr::V4(Ipv4Addr::new(198, 18, 1, 0)), 24));
    mixes.push(subnet);
    if full {
        let mut draws = Draws::new(0x5eed);
        let lines = hot_names.min(100_000);
        mixes.push(mix(
            dir,
            "100,000 hot names, uniform",
            "uniform",
            lines,
            |_| format!("h{}.{ORIGIN} A", draws.below(hot_names)),
        )?);
        let mut weighted = mix(dir, "one weighted name", "weighted", 1, |_| {
            format!("{WEIGHTED_NAME}.{ORIGIN} A")
        })?;
        weighted.weighted = true;
        mixes.push(weighted);
        let mut draws = Draws::new(0xfee1);
        mixes.push(mix(
            dir,
            "hot names, 10% misses",
            "misses",
            lines,
            |line| {
                if line % 10 == 9 {
                    format!("miss{}.{ORIGIN} A", draws.below(hot_names))
                } else {
                    format!("h{}.{ORIGIN} A", draws.below(hot_names))
                }
            },
        )?);
    }
    Ok(Workload { zone, mixes })
}

fn mix(
    dir: &Path,
    label: &'static str,
    file: &str,
    lines: usize,
    mut line: impl FnMut(usize) -> String,
) -> anyhow::Result<Mix> {
    let text: String = (0..lines).map(|i| line(i) + "\n").collect();
    let queries = dir.join(format!("{file}.queries"));
    fs::write(&queries, text)?;
    Ok(Mix {
        label,
        queries,
        edns: Edns::default(),
        weighted: false,
        resolver_shaped: false,
        ipv6: false,
    })
}
