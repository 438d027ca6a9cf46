//! The zone signed elsewhere of `tests/zones/` (signed.test, by BIND's
//! dnssec-signzone) and a validating client for it: BIND's `delv` with the
//! zone's key-signing key as its trust anchor.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{daemon::workspace_root, resolvers::TrustAnchor};

/// The zone's origin.
pub const ORIGIN: &str = "signed.test";

/// The fixture `file` of `tests/zones/` (`signed.test.nsec.zone` or
/// `signed.test.nsec3.zone`; both signed with the same keys).
pub fn zone_file(file: &str) -> PathBuf {
    workspace_root().join("tests/zones").join(file)
}

/// The zone's key-signing key (the DNSKEY with flags 257) and its DS
/// (SHA-256, from `dnssec-dsfromkey`); with `wrong`, a key and a DS of the
/// same lengths with which nothing validates.
pub fn anchor(wrong: bool) -> anyhow::Result<TrustAnchor> {
    // The NSEC fixture has each record on one line.
    let file = zone_file("signed.test.nsec.zone");
    let text = std::fs::read_to_string(&file)?;
    let key: String = text
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("DNSKEY")?;
            let rest = rest.trim().strip_prefix("257 3 13")?;
            Some(rest.split_whitespace().collect())
        })
        .ok_or_else(|| anyhow::anyhow!("no key-signing key in the fixture"))?;
    let output = Command::new("dnssec-dsfromkey")
        .args(["-2", "-f"])
        .arg(&file)
        .arg(ORIGIN)
        .output()?;
    let ds = String::from_utf8_lossy(&output.stdout)
        .split_once(" DS ")
        .map(|(_, ds)| ds.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("dnssec-dsfromkey gave no DS (install bind9-utils)"))?;
    Ok(match wrong {
        true => TrustAnchor {
            algorithm: 13,
            key: key.replacen('c', "d", 1),
            ds: format!(
                "{}{}",
                &ds[..ds.len() - 1],
                if ds.ends_with('0') { '1' } else { '0' }
            ),
        },
        false => TrustAnchor {
            algorithm: 13,
            key,
            ds,
        },
    })
}

/// Writes [`anchor`] as a delv trust anchor file in `dir`.
pub fn trust_anchor(dir: &Path, wrong: bool) -> anyhow::Result<PathBuf> {
    let anchor = anchor(wrong)?;
    let file = dir.join(if wrong { "wrong.conf" } else { "anchor.conf" });
    std::fs::write(
        &file,
        format!(
            "trust-anchors {{ {ORIGIN}. static-key 257 3 {} \"{}\"; }};\n",
            anchor.algorithm, anchor.key
        ),
    )?;
    Ok(file)
}

/// What `delv` (from `command`, which names the program: `delv` here or
/// in a namespace) says of `name` and `record_type`, asking `server` on
/// `port` with `anchor` as the trust anchor.
pub fn delv(
    mut command: Command,
    anchor: &Path,
    server: &str,
    port: u16,
    name: &str,
    record_type: &str,
) -> anyhow::Result<String> {
    let output = command
        .arg("-a")
        .arg(anchor)
        .args([
            &format!("+root={ORIGIN}"),
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            name,
            record_type,
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr))
}

/// Whether delv's output says the answer validated (positive or negative).
pub fn validated(said: &str, positive: bool) -> bool {
    let expected = match positive {
        true => "; fully validated",
        false => "; negative response, fully validated",
    };
    said.lines().any(|line| line == expected)
}
