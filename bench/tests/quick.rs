//! The benchmark itself works: a few seconds of every section, on the real
//! rig, ending in a report with every table. (Figures are not judged here:
//! timing belongs to `cargo xtask bench`, not to the test suite.)

use std::process::Command;

#[test]
fn quick_bench_runs_and_writes_every_table() {
    let out = std::env::temp_dir().join(format!("dnslb-bench-quick-{}.md", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_dnslb-bench"))
        .args(["--quick", "--out"])
        .arg(&out)
        .status()
        .expect("dnslb-bench runs");
    assert!(status.success(), "dnslb-bench --quick failed: {status}");
    let report = std::fs::read_to_string(&out).expect("the report was written");
    let _ = std::fs::remove_file(&out);
    for heading in [
        "## Throughput",
        "## Real resolvers",
        "## Latency",
        "## Kernel time per packet",
        "## Loading hot names",
        "## Function pool cold starts",
        "## DNSSEC online signing",
        "## Signed answers from the kernel",
        "## Load-aware steering",
        "## Targets",
    ] {
        assert!(report.contains(heading), "no {heading} in:\n{report}");
    }
    for row in [
        "| floor (XDP swap only) | one hot name |",
        "| dnslb (XDP) | one hot name |",
        "| dnslb --no-xdp | one hot name |",
        "| dnslb (XDP) | one hot name over IPv6 |",
        "| dnslb (XDP) | DO + cookie (as BIND) |",
        "| dnslb (XDP) | Client Subnet /24 |",
        "| PowerDNS Recursor |",
        "| cold start, query to answer |",
        "| ECDSAP256SHA256 (13) |",
        "| one hot name, DO (as unbound) |",
        "| PowerDNS Recursor | signed, validating |",
        "| dnslb DO hit, signed zone",
        "| signed | ",
        "| dnslb weighted pick, weights from load",
        "| report to the kernel drawing by it |",
        "| load (agent) | 1000 across the veth |",
    ] {
        assert!(report.contains(row), "no row {row} in:\n{report}");
    }
    assert!(
        report.contains("| dnslb hit (3 records, round robin) |"),
        "{report}"
    );
    // Knot DNS in XDP mode is measured where the kernel lets it load its
    // program, and said to be unavailable, with the reason, where not.
    assert!(
        report.contains("| Knot DNS (XDP) | one hot name |")
            || report.contains("**Knot DNS (XDP) could not run on this machine**"),
        "{report}"
    );
}
