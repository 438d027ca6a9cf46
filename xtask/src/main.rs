//! `cargo xtask`: set up the machine, build, run, demo, test, bench.
//!
//! xtask depends on nothing that needs the eBPF toolchain, so it compiles
//! on a fresh machine and can install that toolchain first.

mod setup;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "dnslb's build, test and demo tasks")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every package and tool the build and tests need (idempotent).
    Setup,
    /// Build dnslb (release), XDP program included.
    Build,
    /// Build and run dnslb with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Two namespaces, one veth: answers from the kernel and from the daemon.
    Demo,
    /// Run the whole test suite (unit, BPF_PROG_TEST_RUN, veth end to end).
    Test,
    /// Benchmark dnslb against Knot DNS, NSD and the XDP floor; writes BENCHMARKS.md.
    Bench,
    /// Fuzz: a million frames through the XDP program, then each of the
    /// daemon's cargo-fuzz targets for SECONDS; a crash is kept in
    /// fuzz/regressions/ (commit it: the tests replay it).
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Build the Debian package (cargo-deb) into target/debian/.
    Package,
    /// cargo fmt --check and clippy -D warnings.
    Lint,
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    let result = match xtask.task {
        Task::Setup => setup::run(),
        Task::Build => setup::ensure().and_then(|()| build_release()),
        Task::Run { args } => setup::ensure()
            .and_then(|()| build_release())
            .and_then(|()| run(Command::new(release_dir().join("dnslb")).args(args))),
        Task::Demo => setup::ensure().and_then(|()| demo()),
        Task::Test => setup::ensure().and_then(|()| test()),
        Task::Bench => setup::ensure().and_then(|()| bench()),
        Task::Fuzz { seconds } => setup::ensure().and_then(|()| fuzz(seconds)),
        Task::Package => setup::ensure().and_then(|()| package()),
        // Clippy builds the workspace: the eBPF toolchain and protoc (for
        // etcd's API) must be there on a fresh machine too.
        Task::Lint => setup::ensure().and_then(|()| lint()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn release_dir() -> PathBuf {
    workspace_root().join("target/release")
}

fn bench() -> anyhow::Result<()> {
    build_release()?;
    run(Command::new(release_dir().join("dnslb-bench"))
        .args(["--out", "BENCHMARKS.md"])
        .current_dir(workspace_root()))
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new(env!("CARGO"))
        .args(args)
        .current_dir(workspace_root()))
}

/// Runs `command`, failing unless it exits with success.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// dnslb and the programs that drive it (demo, benchmark), in release.
fn build_release() -> anyhow::Result<()> {
    let packages = ["dns-userspace", "dnslb-tests", "dnslb-bench"];
    let mut args = vec!["build", "--release", "--bins"];
    for package in packages {
        args.extend(["-p", package]);
    }
    cargo(&args)
}

/// The Debian package: dnslb in release, the systemd unit, its options
/// file and the examples (see `[package.metadata.deb]` of dns-userspace),
/// written to `target/debian/dnslb.deb`.
fn package() -> anyhow::Result<()> {
    let out = workspace_root().join("target/debian/dnslb.deb");
    let path = out.to_str().context("the workspace path is not UTF-8")?;
    cargo(&[
        "deb",
        "-p",
        "dns-userspace",
        "--no-dbgsym",
        "--output",
        path,
    ])?;
    println!("package: {}", out.display());
    Ok(())
}

/// The daemon's cargo-fuzz targets (`fuzz/fuzz_targets`).
const FUZZ_TARGETS: [&str; 4] = ["respond", "tcp", "zone", "policy"];

fn fuzz(seconds: u32) -> anyhow::Result<()> {
    cargo(&["build", "-p", "dns-userspace", "--bins"])?;
    run(Command::new(env!("CARGO"))
        .args([
            "test",
            "-p",
            "dnslb-tests",
            "--test",
            "fuzz_xdp",
            "--",
            "--nocapture",
        ])
        .env("DNSLB_FUZZ_FRAMES", "1000000")
        .current_dir(workspace_root()))?;
    let dir = workspace_root().join("fuzz");
    for target in FUZZ_TARGETS {
        std::fs::create_dir_all(dir.join("corpus").join(target))?;
        let crashes = dir.join("artifacts").join(target);
        let ran = Command::new(env!("CARGO"))
            // cargo-fuzz passes flags only nightly takes; the eBPF build
            // already relies on the same switch.
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(format!("corpus/{target}"))
            .arg(format!("seeds/{target}"))
            .args(["--", &format!("-max_total_time={seconds}")])
            .current_dir(&dir)
            .status()
            .with_context(|| format!("running cargo fuzz {target}"))?;
        if !ran.success() {
            let kept = keep_crashes(&crashes, &dir.join("regressions").join(target))?;
            bail!("fuzz target {target} failed; kept as regressions: {kept:?}");
        }
    }
    Ok(())
}

/// Copies what cargo-fuzz left in `artifacts` into `regressions`, where
/// the tests replay it; returns the copies.
fn keep_crashes(artifacts: &Path, regressions: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(regressions)?;
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(artifacts).into_iter().flatten().flatten() {
        let to = regressions.join(entry.file_name());
        std::fs::copy(entry.path(), &to)?;
        kept.push(to);
    }
    Ok(kept)
}

fn demo() -> anyhow::Result<()> {
    build_release()?;
    run(Command::new(release_dir().join("dnslb-demo")).current_dir(workspace_root()))
}

fn test() -> anyhow::Result<()> {
    // The integration tests (and the quick benchmark) run the dnslb binary
    // found beside them; the package test installs the Debian package.
    cargo(&["build", "-p", "dns-userspace", "--bins"])?;
    package()?;
    // Every target runs even when one fails, so that one failure does not
    // hide the others. Cargo's own lines (which target runs, which failed)
    // and the tests' share one pipe, so they are read in the order written.
    let (reader, writer) = std::io::pipe().context("a pipe for cargo test's output")?;
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(workspace_root())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()
        .context("starting cargo test")?;
    let mut report = TestReport::default();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        println!("{line}");
        report.read(&line);
    }
    let status = child.wait()?;
    println!("tests: {} passed, {} failed", report.passed, report.failed);
    if !report.failed_targets.is_empty() {
        println!("failed targets (rerun one with `cargo test ARGS`):");
        for (target, tests) in &report.failed_targets {
            if tests.is_empty() {
                println!("  {target}: the test binary stopped before naming a failed test");
            } else {
                println!("  {target}: {}", tests.join(", "));
            }
        }
    }
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

/// What `cargo test`'s output says, line by line: the totals, and each
/// target that failed with the tests that failed in it.
#[derive(Default)]
struct TestReport {
    passed: u64,
    failed: u64,
    /// Tests seen failing since the last target started.
    failing: Vec<String>,
    /// Cargo's arguments to rerun each failed target, with its failed
    /// tests (none named when the binary itself crashed).
    failed_targets: Vec<(String, Vec<String>)>,
}

impl TestReport {
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if line.starts_with("Running ") || line.starts_with("Doc-tests ") {
            self.failing.clear();
        } else if let Some(summary) = line.strip_prefix("test result: ") {
            self.passed += count(summary, "passed");
            self.failed += count(summary, "failed");
        } else if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            self.failing.push(test.to_owned());
        } else if let Some(rerun) = line.strip_prefix("error: test failed, to rerun pass ") {
            let target = rerun.trim_matches('`').to_owned();
            self.failed_targets
                .push((target, std::mem::take(&mut self.failing)));
        }
    }
}

/// The number before `what` in a summary like "ok. 3 passed; 0 failed; ...".
fn count(summary: &str, what: &str) -> u64 {
    let words: Vec<&str> = summary
        .split([' ', ';', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|pair| pair[1] == what)
        .and_then(|pair| pair[0].parse().ok())
        .unwrap_or(0)
}

fn lint() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_run_is_summed_and_its_failures_named_by_target() {
        let output = "\
     Running unittests src/lib.rs (target/debug/deps/dnslb-abc)
test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s
     Running tests/rate_limit.rs (target/debug/deps/rate_limit-abc)
test a_flood ... FAILED
test the_buckets ... ok
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9s
error: test failed, to rerun pass `-p dnslb-tests --test rate_limit`
     Running tests/veth.rs (target/debug/deps/veth-abc)
error: test failed, to rerun pass `-p dnslb-tests --test veth`
   Doc-tests dnslb
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.0s
";
        let mut report = TestReport::default();
        output.lines().for_each(|line| report.read(line));
        assert_eq!((report.passed, report.failed), (13, 1));
        assert_eq!(
            report.failed_targets,
            [
                (
                    "-p dnslb-tests --test rate_limit".to_owned(),
                    vec!["a_flood".to_owned()]
                ),
                ("-p dnslb-tests --test veth".to_owned(), vec![]),
            ]
        );
    }
}
