//! Installing what dnslb needs on a Debian 12 machine, idempotently.
//!
//! Each step says what it checks and what it does; a step that fails says
//! what to run by hand.

use std::process::Command;

use anyhow::{Context, bail};
use ebpf_build::Toolchain;

/// Debian packages the build, the tests and the demo use, and why.
const PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "a Rust compiler that can rebuild core for the BPF target",
    ),
    (
        "rust-web-src",
        "the standard library source for -Z build-std",
    ),
    ("cargo-web", "the cargo that goes with rustc-web"),
    ("llvm-22-dev", "LLVM for bpf-linker"),
    (
        "libpolly-22-dev",
        "linked by bpf-linker through llvm-config",
    ),
    ("zlib1g-dev", "linked by bpf-linker"),
    ("libzstd-dev", "linked by bpf-linker"),
    ("libxml2-dev", "linked by bpf-linker"),
    (
        "knot-dnsutils",
        "kdig, the DNS client of the tests and the benchmark",
    ),
    ("dnsutils", "dig"),
    (
        "curl",
        "HTTP over the control socket, side by side, in the deadlock test",
    ),
    ("dnsperf", "latency benchmark client"),
    ("iproute2", "network namespaces and veth for the test rig"),
    (
        "knot",
        "Knot DNS: the differential test's reference, and compared against in the benchmark",
    ),
    ("nsd", "NSD, compared against in the benchmark"),
    (
        "knot-dnssecutils",
        "kzonecheck, which checks the signed copy a secondary transfers",
    ),
    (
        "prometheus",
        "Prometheus, whose queries a pool's load follows in the load-steering test",
    ),
    (
        "etcd-server",
        "etcd, the fleet's shared configuration and health in the cluster tests",
    ),
    (
        "etcd-client",
        "etcdctl, to find and stop the etcd leader in the cluster tests",
    ),
    (
        "protobuf-compiler",
        "protoc, which the etcd-client crate's build runs on etcd's API",
    ),
    (
        "bird2",
        "BIRD, the router announcing the anycast address in the anycast test",
    ),
    (
        "unbound",
        "a real resolver, resolving through dnslb in the tests",
    ),
    (
        "bind9",
        "BIND, a real resolver resolving through dnslb in the tests",
    ),
    (
        "knot-resolver",
        "Knot Resolver, a real resolver resolving through dnslb in the tests",
    ),
    (
        "pdns-recursor",
        "PowerDNS Recursor, a real resolver resolving through dnslb in the tests",
    ),
    (
        "ethtool",
        "GRO and threaded NAPI on the benchmark's veth (health-check cost)",
    ),
    (
        "openssl",
        "self-signed certificates for the HTTPS health-check tests",
    ),
    (
        "docker.io",
        "a real Docker Engine for the container-pool tests (they start their own dockerd)",
    ),
    (
        "busybox-static",
        "httpd for function-pool instances and the test containers' image",
    ),
    (
        "chromium",
        "a real browser for the web console tests (headless)",
    ),
    (
        "chromium-driver",
        "chromedriver: the console tests drive chromium through WebDriver",
    ),
    (
        "python3-venv",
        "a virtual environment for DNSViz, installed from PyPI",
    ),
];

/// DNSViz, from PyPI (Debian has no package): the online signing test
/// has it analyse a signed zone. In a virtual environment of its own.
const DNSVIZ_DIR: &str = "/opt/dnslb-tools/dnsviz";
const DNSVIZ_PACKAGES: &[&str] = &["dnsviz==0.11.*", "dnspython", "cryptography", "pygraphviz"];

fn dnsviz_ok() -> bool {
    // grok, the analysis, needs every one of the packages.
    Command::new(format!("{DNSVIZ_DIR}/bin/python"))
        .args(["-c", "import dnsviz, dns, cryptography, pygraphviz"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn install_dnsviz() -> anyhow::Result<()> {
    if dnsviz_ok() {
        println!("setup: dnsviz             installed (in {DNSVIZ_DIR})");
        return Ok(());
    }
    println!("setup: dnsviz             missing: installing it from PyPI into {DNSVIZ_DIR}");
    let by_hand = format!(
        "python3 -m venv {DNSVIZ_DIR} && {DNSVIZ_DIR}/bin/pip install {}",
        DNSVIZ_PACKAGES.join(" ")
    );
    crate::run(Command::new("python3").args(["-m", "venv", DNSVIZ_DIR]))
        .with_context(|| format!("making the virtual environment failed; run: {by_hand}"))?;
    crate::run(
        Command::new(format!("{DNSVIZ_DIR}/bin/pip"))
            .args(["install", "-q"])
            .args(DNSVIZ_PACKAGES),
    )
    .with_context(|| format!("installing DNSViz failed; run: {by_hand}"))
}

const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// `cargo xtask setup`: checks everything and installs what is missing.
pub fn run() -> anyhow::Result<()> {
    install_packages()?;
    install_bpf_linker()?;
    CARGO_DEB.install()?;
    CARGO_FUZZ.install()?;
    install_dnsviz()?;
    check_bpf_toolchain()?;
    println!("setup: everything dnslb needs is installed");
    Ok(())
}

/// Runs setup only when something is missing, quietly otherwise.
pub fn ensure() -> anyhow::Result<()> {
    if missing_packages().is_empty()
        && bpf_linker_ok()
        && CARGO_DEB.ok()
        && CARGO_FUZZ.ok()
        && dnsviz_ok()
        && Toolchain::find().is_some()
    {
        return Ok(());
    }
    println!("setup: something is missing, installing first");
    run()
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !package_installed(name))
        .collect()
}

fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn install_packages() -> anyhow::Result<()> {
    let missing = missing_packages();
    for (name, why) in PACKAGES {
        let state = if missing.contains(name) {
            "missing"
        } else {
            "installed"
        };
        println!("setup: package {name:<16} {state:<9} ({why})");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let by_hand = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    println!("setup: apt-get update");
    crate::run(Command::new("apt-get").args(["update", "-q"]))
        .with_context(|| format!("apt-get update failed; as root, run: {by_hand}"))?;
    println!("setup: apt-get install {}", missing.join(" "));
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("installing packages failed; as root, run: {by_hand}"))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
        })
}

fn install_bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_ok() {
        println!("setup: bpf-linker {BPF_LINKER_VERSION}  installed");
        return Ok(());
    }
    let by_hand = format!(
        "LLVM_PREFIX={LLVM_PREFIX} LLVM_SYS_221_PREFIX={LLVM_PREFIX} cargo install bpf-linker \
         --version '^{BPF_LINKER_VERSION}' --no-default-features --features llvm-22"
    );
    println!(
        "setup: bpf-linker {BPF_LINKER_VERSION}  missing: building it against LLVM 22 (about a minute)"
    );
    crate::run(
        Command::new(env!("CARGO"))
            .args(["install", "bpf-linker", "--version"])
            .arg(format!("^{BPF_LINKER_VERSION}"))
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
    )
    .with_context(|| format!("building bpf-linker failed; run: {by_hand}"))?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// A cargo subcommand a task runs, built with `cargo install` if missing.
struct CargoTool {
    krate: &'static str,
    subcommand: &'static str,
    /// The version wanted, as a semver requirement's caret part.
    version: &'static str,
    what_for: &'static str,
}

/// cargo-deb, for `cargo xtask package`; 3.x builds with Rust 1.88 and up.
const CARGO_DEB: CargoTool = CargoTool {
    krate: "cargo-deb",
    subcommand: "deb",
    version: "3",
    what_for: "cargo xtask package",
};

/// cargo-fuzz, for `cargo xtask fuzz`.
const CARGO_FUZZ: CargoTool = CargoTool {
    krate: "cargo-fuzz",
    subcommand: "fuzz",
    version: "0.13",
    what_for: "cargo xtask fuzz",
};

impl CargoTool {
    fn ok(&self) -> bool {
        Command::new(env!("CARGO"))
            .args([self.subcommand, "--version"])
            .output()
            .is_ok_and(|out| {
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                let wanted = format!("{}.", self.version);
                text.split_whitespace()
                    .any(|word| word.starts_with(&wanted))
            })
    }

    fn install(&self) -> anyhow::Result<()> {
        let (krate, version) = (self.krate, self.version);
        if self.ok() {
            println!("setup: {krate} {version}.x     installed");
            return Ok(());
        }
        println!(
            "setup: {krate} {version}.x     missing: building it (about a minute; for {})",
            self.what_for
        );
        crate::run(
            Command::new(env!("CARGO"))
                .args(["install", krate, "--locked", "--version"])
                .arg(format!("^{version}")),
        )
        .with_context(|| {
            format!("building {krate} failed; run: cargo install {krate} --locked --version '^{version}'")
        })
    }
}

fn check_bpf_toolchain() -> anyhow::Result<()> {
    match Toolchain::find() {
        Some(toolchain) => {
            println!("setup: eBPF compiler     {}", toolchain.describe());
            Ok(())
        }
        None => bail!(
            "no compiler that can build core for bpfel-unknown-none: \
             install rustc-web and rust-web-src (apt-get install rustc-web rust-web-src), \
             or a rustup nightly with rust-src"
        ),
    }
}
