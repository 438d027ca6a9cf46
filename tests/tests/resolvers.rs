//! The resolvers that query authoritative servers on the internet, pointed
//! at dnslb on the veth rig: each resolves 50 hot names, A and AAAA, in a
//! zone it reaches over IPv4 and one it reaches over IPv6, with the EDNS
//! habits it ships with (DO, cookies, Client Subnet). At least 99% of the
//! queries each sends for hot names must be answered by the kernel,
//! counted by the kernel's own counters, and every answer must be right;
//! when dnslb signs the zones and the resolvers validate, every answer
//! must be validated too.

use dnslb_tests::{netns::Rig, resolvers::measure_shares};

fn resolvers_are_answered_by_the_kernel(signed: bool) {
    let rig = Rig::new().expect("namespaces and veth");
    let dir = std::env::temp_dir().join(format!(
        "dnslb-resolvers-{}-{}",
        std::process::id(),
        if signed { "signed" } else { "plain" }
    ));
    let names = 50;
    let shares =
        measure_shares(&rig, &dir, names, signed).unwrap_or_else(|error| panic!("{error:#}"));
    let _ = std::fs::remove_dir_all(&dir);
    let report: Vec<String> = shares
        .iter()
        .map(|share| {
            format!(
                "{}{}: {} of {} hot-name queries answered by XDP",
                share.kind.name(),
                if signed { ", validating" } else { "" },
                share.by_xdp,
                share.hot_queries
            )
        })
        .collect();
    println!("{}", report.join("\n"));
    for share in &shares {
        // Two zones, A and AAAA: every name and type reached dnslb once at
        // least (the resolvers start with empty caches).
        assert!(
            share.hot_queries >= 4 * u64::from(names),
            "{}",
            report.join("\n")
        );
        assert!(share.fraction() >= 0.99, "{}", report.join("\n"));
    }
}

#[test]
fn real_resolvers_are_answered_by_the_kernel() {
    resolvers_are_answered_by_the_kernel(false);
}

#[test]
fn validating_resolvers_get_signed_answers_from_the_kernel() {
    resolvers_are_answered_by_the_kernel(true);
}
