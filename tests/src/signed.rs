//! The zone signed elsewhere of `tests/zones/` (signed.test, by BIND's
//! dnssec-signzone) and a validating client for it: BIND's `delv` with the
//! zone's key-signing key as its trust anchor.

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use hickory_proto::{
    dnssec::rdata::DNSSECRData,
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType},
};

use crate::{
    daemon::workspace_root,
    netns::{Netns, Rig, SERVER_ADDR},
    resolvers::{Forward, Resolver, ResolverKind, TrustAnchor},
};

/// The zone's origin.
pub const ORIGIN: &str = "signed.test";

/// The fixture `file` of `tests/zones/` (`signed.test.nsec.zone` or
/// `signed.test.nsec3.zone`; both signed with the same keys).
pub fn zone_file(file: &str) -> PathBuf {
    workspace_root().join("tests/zones").join(file)
}

/// The fixture's key-signing key (the DNSKEY with flags 257) and its DS
/// (SHA-256, from `dnssec-dsfromkey`); with `wrong`, a key and a DS of the
/// same lengths with which nothing validates.
pub fn anchor(wrong: bool) -> anyhow::Result<TrustAnchor> {
    // The NSEC fixture has each record on one line.
    let file = zone_file("signed.test.nsec.zone");
    let mut dsfromkey = Command::new("dnssec-dsfromkey");
    dsfromkey.args(["-2", "-f"]).arg(&file).arg(ORIGIN);
    TrustAnchor::of(&std::fs::read_to_string(&file)?, dsfromkey, wrong)
}

/// The key-signing key of `ORIGIN` that dnslb keeps in `key_dir` (a
/// combined key or a KSK: the `.key` file with flags 257), as
/// [`anchor`] gives the fixture's.
pub fn anchor_in_key_dir(key_dir: &Path, wrong: bool) -> anyhow::Result<TrustAnchor> {
    TrustAnchor::in_key_dir(key_dir, None, wrong)
}

/// Writes [`anchor`] as a delv trust anchor file in `dir`.
pub fn trust_anchor(dir: &Path, wrong: bool) -> anyhow::Result<PathBuf> {
    write_trust_anchor(
        dir,
        &anchor(wrong)?,
        if wrong { "wrong.conf" } else { "anchor.conf" },
    )
}

/// Writes `anchor` for `ORIGIN` as a delv trust anchor file `name` in
/// `dir`.
pub fn write_trust_anchor(dir: &Path, anchor: &TrustAnchor, name: &str) -> anyhow::Result<PathBuf> {
    let file = dir.join(name);
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

/// Starts each validating resolver in the rig's client namespace with
/// `ORIGIN` forwarded to the rig's server, once with `right` and once with
/// `wrong` as its trust anchor, and runs `check` with it and whether its
/// anchor is the right one. Each runs in a directory of `dir`.
pub fn each_validating_resolver(
    rig: &Rig,
    dir: &Path,
    right: &TrustAnchor,
    wrong: &TrustAnchor,
    mut check: impl FnMut(&Resolver, bool),
) {
    let server = SERVER_ADDR.parse().expect("the server's address");
    for (n, kind) in ResolverKind::ALL.into_iter().enumerate() {
        for (anchor, valid) in [(right, true), (wrong, false)] {
            let forwards = [Forward {
                zone: ORIGIN,
                server,
                trust_anchor: Some(anchor),
            }];
            let run = dir.join(format!("{n}-{valid}"));
            let resolver = Resolver::start(kind, &rig.client, &run, 5300 + n as u16, &forwards)
                .unwrap_or_else(|error| panic!("{error:#}"));
            check(&resolver, valid);
        }
    }
}

/// Asks the rig's server for `name`/`record_type` with DO set, over UDP
/// from `netns`; `None` when no answer comes within a second.
pub fn ask_with_do(
    netns: &Netns,
    name: &str,
    record_type: RecordType,
) -> anyhow::Result<Option<Message>> {
    let name = name.to_owned();
    netns.run(move || ask_with_do_at((SERVER_ADDR, 53), &name, record_type))?
}

/// Asks `server` for `name`/`record_type` with DO set, over UDP from this
/// namespace; `None` when no answer comes within a second.
pub fn ask_with_do_at(
    server: impl std::net::ToSocketAddrs,
    name: &str,
    record_type: RecordType,
) -> anyhow::Result<Option<Message>> {
    let mut query = Message::query();
    query.metadata.id = fastrand::u16(..);
    query.add_query(Query::query(Name::from_ascii(name)?, record_type));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    query.edns = Some(edns);
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    socket.send_to(&query.to_vec()?, server)?;
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Ok(len) => Ok(Some(Message::from_vec(&buffer[..len])?)),
        Err(_) => Ok(None),
    }
}

/// The key tags of the DNSKEYs in `message`'s answer.
pub fn dnskey_tags(message: &Message) -> Vec<u16> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(key)) => key.calculate_key_tag().ok(),
            _ => None,
        })
        .collect()
}

/// The key tag and expiration of each RRSIG covering `covered` in
/// `message`'s answer.
pub fn rrsigs_of(message: &Message, covered: RecordType) -> Vec<(u16, u32)> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) if rrsig.input().type_covered == covered => {
                Some((rrsig.input().key_tag, rrsig.input().sig_expiration.get()))
            }
            _ => None,
        })
        .collect()
}
