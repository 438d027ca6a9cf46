//! The benchmark's zone and query mixes, generated afresh each run.

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

pub const ORIGIN: &str = "bench.test";
/// The name of the weighted mix: three addresses in the zone.
pub const WEIGHTED_NAME: &str = "weighted";

/// A query file for kxdpgun and dnsperf ("name type" per line).
pub struct Mix {
    pub label: &'static str,
    pub queries: PathBuf,
    /// Queries only the weighted name.
    pub weighted: bool,
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
/// (three addresses, round robin) to `dir`.
pub fn write_zone(dir: &Path, hot_names: usize) -> anyhow::Result<PathBuf> {
    let mut zone = String::with_capacity(hot_names * 40 + 512);
    zone.push_str(&format!(
        "$ORIGIN {ORIGIN}.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ NS ns1\nns1 A 198.18.0.2\n\
         www A 198.18.10.1\nwww A 198.18.10.2\nwww A 198.18.10.3\n\
         {WEIGHTED_NAME} A 198.18.11.1\n{WEIGHTED_NAME} A 198.18.11.2\n{WEIGHTED_NAME} A 198.18.11.3\n"
    ));
    for i in 0..hot_names {
        let _ = writeln!(zone, "h{i} A {}", address(i));
    }
    let path = dir.join(format!("{ORIGIN}.zone"));
    fs::write(&path, zone)?;
    Ok(path)
}

/// The zone and the query mixes. `full` adds the many-names and miss mixes
/// to the single hot name.
pub fn generate(dir: &Path, hot_names: usize, full: bool) -> anyhow::Result<Workload> {
    fs::create_dir_all(dir)?;
    let zone = write_zone(dir, hot_names)?;
    let mut mixes = vec![mix(dir, "one hot name", "one", 1, |_| {
        format!("www.{ORIGIN} A")
    })?];
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
        weighted: false,
    })
}
