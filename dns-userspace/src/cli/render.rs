//! The control commands' answers as text tables, for people; `--json`
//! gives scripts the daemon's own JSON instead.

use std::fmt::Write as _;

use crate::api::types::{
    AnycastStatus, Applied, DnssecZone, EndpointInfo, HealthRow, ServiceDetail, ServiceInfo, Stats,
    Status, ZoneInfo,
};

/// Columns padded to their widest cell, two spaces apart.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|row| row.get(c).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn yes(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn duration(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m{}s", seconds % 60),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

fn anycast_line(anycast: &AnycastStatus) -> String {
    let announced = if anycast.announced.is_empty() {
        "nothing announced".to_owned()
    } else {
        format!(
            "announcing {} on {}",
            anycast.announced.join(", "),
            anycast.interface.as_deref().unwrap_or("?")
        )
    };
    format!("anycast     {announced} ({})\n", anycast.reason)
}

/// `dnslb anycast withdraw|announce`.
pub fn anycast(anycast: &AnycastStatus) -> String {
    anycast_line(anycast)
}

pub fn status(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "dnslb {}", status.version);
    let _ = writeln!(
        out,
        "interface   {}",
        status
            .interface
            .as_deref()
            .unwrap_or("none (userspace only)")
    );
    let _ = writeln!(out, "XDP mode    {}", status.xdp_mode);
    let _ = writeln!(out, "uptime      {}", duration(status.uptime_seconds));
    let _ = writeln!(out, "zones       {}", status.zones);
    let _ = writeln!(out, "services    {}", status.services);
    let _ = writeln!(out, "answering   {}", status.answering_on.join(" "));
    if let Some(policy) = &status.policy_file {
        let _ = writeln!(out, "policy      {}", policy.display());
    }
    let _ = writeln!(
        out,
        "control     {}{}",
        status.control_socket.display(),
        status
            .control_listen
            .as_ref()
            .map_or(String::new(), |addr| format!(", http://{addr}"))
    );
    let e = status.endpoints;
    let _ = writeln!(
        out,
        "endpoints   {} in all, {} down, {} drained",
        e.total, e.down, e.drained
    );
    let _ = writeln!(
        out,
        "overrides   {} drained, {} weights (kept in {})",
        status.overrides.drained,
        status.overrides.weights,
        status.state_dir.display()
    );
    if let Some(fleet) = &status.fleet {
        let state = if fleet.connected {
            format!("connected, revision {}", fleet.revision)
        } else {
            format!(
                "NOT CONNECTED: serving the last state (revision {}), changes refused",
                fleet.revision
            )
        };
        let _ = writeln!(
            out,
            "fleet       {} as node {}: {state}",
            fleet.store, fleet.node
        );
    }
    if let Some(anycast) = &status.anycast {
        let _ = write!(out, "{}", anycast_line(anycast));
    }
    if !status.kernel_maps.is_empty() {
        out.push_str("\nkernel maps\n");
        let mut table = Table::new(&["TYPE", "NAMES UP TO", "ENTRIES", "CAPACITY", "FULL"]);
        for map in &status.kernel_maps {
            table.row(vec![
                map.record_type.clone(),
                format!("{} bytes", map.names_up_to),
                map.entries.to_string(),
                map.capacity.to_string(),
                format!(
                    "{:.1}%",
                    100.0 * map.entries as f64 / f64::from(map.capacity.max(1))
                ),
            ]);
        }
        out.push_str(&table.render());
    }
    if let Some(signatures) = &status.kernel_signatures {
        let _ = writeln!(
            out,
            "\nsigned answers   {} values signed in the kernel ({} signatures); {} names of signed zones whose DO queries the daemon answers{}",
            signatures.signed_values,
            signatures.entries,
            signatures.passed.len(),
            if signatures.passed.is_empty() {
                ""
            } else {
                ":"
            }
        );
        const SHOWN: usize = 20;
        for passed in signatures.passed.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                passed.name, passed.record_type, passed.reason
            );
        }
        if signatures.passed.len() > SHOWN {
            let _ = writeln!(out, "  … and {} more", signatures.passed.len() - SHOWN);
        }
    }
    if let Some(networks) = &status.client_networks {
        let _ = writeln!(
            out,
            "\nclient networks  {} of {}; the largest service has {}: {}",
            networks.entries,
            networks.capacity,
            networks.largest_service,
            if networks.next_generation_fits() {
                "its next generation fits beside every current one"
            } else {
                "NO ROOM for its next generation: raise --hot-capacity"
            }
        );
    }
    out
}

pub fn zones(zones: &[ZoneInfo]) -> String {
    let mut table = Table::new(&["ORIGIN", "SERIAL", "NAMES", "SIGNED", "FROM", "FILE"]);
    for zone in zones {
        let from = match zone.source {
            crate::api::types::ZoneSource::CommandLine => "command line",
            crate::api::types::ZoneSource::PolicyFile => "policy file",
            crate::api::types::ZoneSource::ControlApi => "control API",
        };
        table.row(vec![
            zone.origin.clone(),
            zone.serial.to_string(),
            zone.names.to_string(),
            yes(zone.signed),
            from.to_owned(),
            zone.file.display().to_string(),
        ]);
    }
    table.render()
}

/// Each signed zone's keys, one a row, with its signatures' first expiry
/// (signed elsewhere) or its keys' states and next events (online); then
/// each online signer's cache.
pub fn dnssec(zones: &[DnssecZone]) -> String {
    let now = unix_now();
    let when = |at: Option<u64>| {
        at.map_or_else(
            || "-".to_owned(),
            |at| match at.checked_sub(now) {
                Some(left) => format!("in {}", duration(left)),
                None => format!("EXPIRED {} ago", duration(now - at)),
            },
        )
    };
    let mut table = Table::new(&[
        "ZONE",
        "MODE",
        "KEY TAG",
        "ALGORITHM",
        "ROLE",
        "STATE",
        "NEXT EVENT",
        "SIGNATURES",
        "FIRST EXPIRES",
    ]);
    for zone in zones {
        for key in &zone.keys {
            let state = match &key.state {
                Some(state) => {
                    let name = format!("{state:?}").to_ascii_lowercase();
                    match key.cds_published {
                        true => format!("{name}, CDS published"),
                        false => name,
                    }
                }
                None => "-".to_owned(),
            };
            table.row(vec![
                zone.origin.clone(),
                zone.mode.clone(),
                key.tag.to_string(),
                format!("{} ({})", key.algorithm_name, key.algorithm),
                key.role.to_ascii_uppercase(),
                state,
                when(key.next_event),
                zone.signatures.to_string(),
                when(zone.first_expiration),
            ]);
        }
    }
    let mut text = table.render();
    for zone in zones {
        if let Some(signer) = &zone.signer {
            let asked = signer.cache_hits + signer.cache_misses;
            let hit_rate = match asked {
                0 => "-".to_owned(),
                _ => format!("{:.1}%", 100.0 * signer.cache_hits as f64 / asked as f64),
            };
            text.push_str(&format!(
                "\n{}: {} RRsets' signatures cached ({} KiB), hit rate {hit_rate}; {} signatures made, {} failures; valid {} each; next key event {}\n",
                zone.origin,
                signer.cache_entries,
                signer.cache_bytes.div_ceil(1024),
                signer.signatures_made,
                signer.signing_failures,
                duration(signer.validity),
                when(signer.next_key_event),
            ));
        }
    }
    text
}

/// The DS records of the zones' key-signing keys, as `dnssec-dsfromkey`
/// prints them.
pub fn ds_records(zones: &[DnssecZone]) -> String {
    zones
        .iter()
        .flat_map(|zone| {
            zone.keys
                .iter()
                .filter(|key| key.role == "ksk" || key.role == "csk")
                .filter_map(|key| Some(format!("{} IN DS {}\n", zone.origin, key.ds.as_ref()?)))
        })
        .collect()
}

pub fn services(services: &[ServiceInfo]) -> String {
    let mut table = Table::new(&[
        "SERVICE",
        "NAME",
        "TYPE",
        "TTL",
        "POLICY",
        "FAIL CLOSED",
        "STATE",
    ]);
    for service in services {
        table.row(vec![
            service.label.clone(),
            service.name.clone(),
            service.record_type.clone(),
            service.ttl.to_string(),
            service.policy.clone(),
            yes(service.fail_closed),
            service.standing.clone(),
        ]);
    }
    table.render()
}

pub fn service(detail: &ServiceDetail) -> String {
    let s = &detail.service;
    let mut out = format!(
        "service {}: {} {} (TTL {}{})\n",
        s.label,
        s.name,
        s.record_type,
        s.ttl,
        if s.fail_closed { ", fails closed" } else { "" }
    );
    if !s.standing_reason.is_empty() {
        let _ = writeln!(out, "{}: {}", s.standing.to_uppercase(), s.standing_reason);
    }
    out.push_str("\npolicy\n");
    for line in &detail.tree {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str("\nanswers now\n");
    let mut table = Table::new(&["CLIENT NETWORK", "BRANCH", "ADDRESSES"]);
    for network in &detail.networks {
        let addresses: Vec<String> = network.addresses.iter().map(ToString::to_string).collect();
        table.row(vec![
            network.network.clone(),
            network.branch.clone(),
            if addresses.is_empty() {
                "none".to_owned()
            } else {
                addresses.join(" ")
            },
        ]);
    }
    out.push_str(&table.render());
    out.push_str("\nendpoints\n");
    out.push_str(&endpoints(&detail.endpoints));
    out
}

pub fn endpoints(endpoints: &[EndpointInfo]) -> String {
    // Load columns only where a pool weighs by load or slow start.
    let weighed = endpoints.iter().any(|e| !e.weighing.is_empty());
    let mut headers = vec!["POOL", "ADDRESS", "STATE", "WEIGHT", "HEALTHY", "DRAINED"];
    if weighed {
        headers.extend(["LOAD", "EFFECTIVE", "WHY"]);
    }
    let mut table = Table::new(&headers);
    for endpoint in endpoints {
        let weight = if endpoint.weight == endpoint.file_weight {
            endpoint.weight.to_string()
        } else {
            format!("{} (file: {})", endpoint.weight, endpoint.file_weight)
        };
        // What the answers make of it: drained and down say so, not the
        // member's own condition.
        let state = if endpoint.drained {
            "drained".to_owned()
        } else if endpoint.condition == "ready" && !endpoint.healthy {
            "down".to_owned()
        } else {
            endpoint.condition.clone()
        };
        let mut row = vec![
            endpoint.pool.clone(),
            endpoint.address.to_string(),
            state,
            weight,
            yes(endpoint.healthy),
            yes(endpoint.drained),
        ];
        if weighed {
            row.extend([
                endpoint
                    .load
                    .map_or_else(|| "-".to_owned(), |load| format!("{load:.2}")),
                format!("{:.2}", endpoint.effective_weight),
                endpoint.weighing.clone(),
            ]);
        }
        table.row(row);
    }
    table.render()
}

/// Seconds since 1970, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

pub fn health(rows: &[HealthRow]) -> String {
    let now = unix_now();
    let mut table = Table::new(&[
        "CHECK",
        "POOL",
        "ENDPOINT",
        "VERDICT",
        "LAST PROBE",
        "LAST CHANGE",
        "FAILURES IN A ROW",
        "LAST FAILURE",
    ]);
    for row in rows {
        let endpoint = match row.port {
            Some(port) if row.address.is_ipv6() => format!("[{}]:{port}", row.address),
            Some(port) => format!("{}:{port}", row.address),
            None => row.address.to_string(),
        };
        table.row(vec![
            row.check.clone(),
            row.pool.clone(),
            endpoint,
            if row.up { "up" } else { "DOWN" }.to_owned(),
            if row.probes == 0 {
                "not yet".to_owned()
            } else {
                format!("{:.1} ms", row.last_latency_ms)
            },
            row.last_transition.map_or_else(
                || "never".to_owned(),
                |at| format!("{} ago", duration(now.saturating_sub(at))),
            ),
            row.failures_in_row.to_string(),
            row.last_failure.clone(),
        ]);
    }
    table.render()
}

/// Rates between two readings of the counters, and the top names.
pub fn stats(before: &Stats, now: &Stats) -> String {
    let seconds = (now.uptime_seconds - before.uptime_seconds).max(1e-3);
    // The PER SECOND and SINCE START cells of a count.
    let counted = |earlier: u64, count: u64| {
        [
            format!("{:.0}", count.saturating_sub(earlier) as f64 / seconds),
            count.to_string(),
        ]
    };
    let mut out = String::from("queries per second\n");
    let mut table = Table::new(&["PATH", "PER SECOND", "SINCE START"]);
    let mut row = |label: String, earlier: u64, count: u64| {
        table.row([vec![label], counted(earlier, count).to_vec()].concat());
    };
    row(
        "kernel (XDP)".to_owned(),
        before.kernel_answered,
        now.kernel_answered,
    );
    for path in &now.userspace_answered {
        let then = earlier(&before.userspace_answered, |then| {
            (then.transport == path.transport).then_some(then.queries)
        });
        row(format!("daemon ({})", path.transport), then, path.queries);
    }
    out.push_str(&table.render());
    if !now.kernel_passed.is_empty() {
        out.push_str("\npassed by the kernel to the daemon\n");
        let mut table = Table::new(&["REASON", "PER SECOND", "SINCE START"]);
        for passed in &now.kernel_passed {
            let then = earlier(&before.kernel_passed, |then| {
                (then.reason == passed.reason).then_some(then.queries)
            });
            table.row(
                [
                    vec![passed.reason.clone()],
                    counted(then, passed.queries).to_vec(),
                ]
                .concat(),
            );
        }
        out.push_str(&table.render());
    }
    if !now.branches.is_empty() {
        out.push_str("\npolicy branches\n");
        let mut table = Table::new(&["SERVICE", "BRANCH", "PER SECOND", "SINCE START"]);
        for branch in &now.branches {
            let then = earlier(&before.branches, |then| {
                (then.service == branch.service && then.branch == branch.branch)
                    .then_some(then.answers)
            });
            let labels = vec![branch.service.clone(), branch.branch.clone()];
            table.row([labels, counted(then, branch.answers).to_vec()].concat());
        }
        out.push_str(&table.render());
    }
    out.push_str("\nnames most asked of the daemon, last minute\n");
    let mut table = Table::new(&["NAME", "QUERIES"]);
    for top in &now.top_names {
        table.row(vec![top.name.clone(), top.queries.to_string()]);
    }
    out.push_str(&table.render());
    out
}

/// The count the earlier reading had for the same item (0 if none).
fn earlier<T>(before: &[T], same: impl Fn(&T) -> Option<u64>) -> u64 {
    before.iter().find_map(same).unwrap_or(0)
}

pub fn applied(applied: &Applied) -> String {
    format!(
        "applied: {} zones, {} services; kernel: {} names written, {} removed\n",
        applied.zones, applied.services, applied.kernel_written, applied.kernel_removed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{NameQueries, PassedQueries, TransportQueries};

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["A", "LONGER"]);
        table.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(table.render(), "A          LONGER\nwide cell  x\n");
    }

    /// The cells of a table's first row under its headers.
    fn first_row(table: &str) -> Vec<String> {
        let line = table.lines().nth(1).unwrap_or_default();
        line.split("  ")
            .filter(|c| !c.is_empty())
            .map(|c| c.trim().to_owned())
            .collect()
    }

    #[test]
    fn endpoints_show_overridden_weights_and_drains() {
        let rows = [EndpointInfo {
            pool: "web".into(),
            address: "198.18.0.1".parse().unwrap(),
            weight: 0,
            file_weight: 5,
            healthy: true,
            drained: true,
            condition: "ready".into(),
            load: None,
            effective_weight: 0.0,
            weighing: String::new(),
        }];
        assert_eq!(
            first_row(&endpoints(&rows)),
            ["web", "198.18.0.1", "drained", "0 (file: 5)", "yes", "yes"],
            "the state the answers see"
        );
        let weighed = EndpointInfo {
            weight: 2,
            file_weight: 2,
            drained: false,
            load: Some(0.55),
            effective_weight: 1.0,
            weighing: "load 0.55 between the watermarks: 50% of its weight".into(),
            ..rows[0].clone()
        };
        assert_eq!(
            first_row(&endpoints(&[weighed])),
            [
                "web",
                "198.18.0.1",
                "ready",
                "2",
                "yes",
                "no",
                "0.55",
                "1.00",
                "load 0.55 between the watermarks: 50% of its weight"
            ],
            "configured weight, load, effective weight and why"
        );
    }

    #[test]
    fn stats_are_rates_between_readings() {
        let reading = |uptime: f64, kernel: u64, top_names: Vec<NameQueries>| Stats {
            uptime_seconds: uptime,
            kernel_answered: kernel,
            kernel_passed: vec![PassedQueries {
                reason: "not hot".into(),
                queries: kernel / 10,
            }],
            userspace_answered: vec![TransportQueries {
                transport: "all".into(),
                queries: kernel / 2,
            }],
            branches: vec![],
            top_names,
        };
        let www = NameQueries {
            name: "www.example.".into(),
            queries: 7,
        };
        let text = stats(
            &reading(10.0, 1000, vec![]),
            &reading(12.0, 3000, vec![www]),
        );
        assert!(text.contains("kernel (XDP)  1000        3000"), "{text}");
        assert!(text.contains("daemon (all)  500         1500"), "{text}");
        assert!(text.contains("not hot  100         300"), "{text}");
        assert!(text.contains("www.example.  7"), "{text}");
    }
}
