//! Other DNS servers run beside dnslb: Knot DNS and NSD, configured from
//! here for the differential test and the benchmark.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// A zone to serve: origin (no trailing dot needed) and master file.
pub struct PeerZone<'a> {
    pub origin: &'a str,
    pub file: &'a Path,
}

/// Writes a Knot DNS configuration into `dir` (which also holds its state)
/// listening on `address@port`, in XDP mode on `xdp_iface` if given, and
/// returns its path. Knot keeps no journal and never rewrites the files.
pub fn knot_config(
    dir: &Path,
    listen: &str,
    xdp_iface: Option<&str>,
    zones: &[PeerZone],
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let xdp = xdp_iface.map_or(String::new(), |iface| {
        format!("xdp:\n    listen: {iface}\n    udp: on\n")
    });
    let mut config = format!(
        "server:\n    rundir: \"{dir}\"\n    user: root:root\n    listen: {listen}\n    udp-workers: 2\n    \
         background-workers: 1\n    edns-client-subnet: on\n{xdp}database:\n    storage: \"{dir}\"\nzone:\n",
        dir = dir.display(),
    );
    for zone in zones {
        config.push_str(&format!(
            "  - domain: {}\n    file: \"{}\"\n    journal-content: none\n    zonefile-sync: -1\n",
            zone.origin,
            zone.file.display()
        ));
    }
    config.push_str("log:\n  - target: stderr\n    any: notice\n");
    let path = dir.join("knot.conf");
    fs::write(&path, config)?;
    Ok(path)
}

/// Writes an NSD configuration into `dir` listening on `address` port 53,
/// response rate limiting off (Debian's default limits a benchmark to 200
/// answers per second), and returns its path.
pub fn nsd_config(dir: &Path, address: &str, zones: &[PeerZone]) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let mut config = format!(
        "server:\n    ip-address: {address}\n    port: 53\n    server-count: 2\n    username: \"\"\n    \
         chroot: \"\"\n    zonesdir: \"{dir}\"\n    pidfile: \"{dir}/nsd.pid\"\n    database: \"\"\n    \
         zonelistfile: \"{dir}/zone.list\"\n    xfrdfile: \"{dir}/xfrd.state\"\n    xfrdir: \"{dir}\"\n    \
         verbosity: 1\n    rrl-ratelimit: 0\nremote-control:\n    control-enable: no\n",
        dir = dir.display(),
    );
    for zone in zones {
        config.push_str(&format!(
            "zone:\n    name: {}\n    zonefile: \"{}\"\n",
            zone.origin,
            zone.file.display()
        ));
    }
    let path = dir.join("nsd.conf");
    fs::write(&path, config)?;
    Ok(path)
}

/// Writes an unbound configuration into `dir`: a resolver listening on
/// `127.0.0.1@port`, sending queries for `zone` to the authoritative server
/// at `127.0.0.1@authority_port` (a stub zone), without DNSSEC validation
/// (the zone is unsigned), and returns its path.
pub fn unbound_config(
    dir: &Path,
    port: u16,
    zone: &str,
    authority_port: u16,
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let config = format!(
        "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-ip6: no\n    username: \"\"\n    \
         chroot: \"\"\n    directory: \"{dir}\"\n    pidfile: \"{dir}/unbound.pid\"\n    use-syslog: no\n    \
         logfile: \"\"\n    verbosity: 1\n    do-not-query-localhost: no\n    module-config: \"iterator\"\n    \
         access-control: 127.0.0.0/8 allow\n    domain-insecure: \"{zone}\"\n\
         remote-control:\n    control-enable: no\nstub-zone:\n    name: \"{zone}\"\n    \
         stub-addr: 127.0.0.1@{authority_port}\n",
        dir = dir.display(),
    );
    let path = dir.join("unbound.conf");
    fs::write(&path, config)?;
    Ok(path)
}
