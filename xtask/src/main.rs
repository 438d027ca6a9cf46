//! `cargo xtask`: set up the machine, build, run, demo, test, bench.
//!
//! xtask depends on nothing that needs the eBPF toolchain, so it compiles
//! on a fresh machine and can install that toolchain first.

mod setup;

use std::{
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
        Task::Lint => lint(),
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

fn demo() -> anyhow::Result<()> {
    build_release()?;
    run(Command::new(release_dir().join("dnslb-demo")).current_dir(workspace_root()))
}

fn test() -> anyhow::Result<()> {
    // The integration tests (and the quick benchmark) run the dnslb binary
    // found beside them.
    cargo(&["build", "-p", "dns-userspace", "--bins"])?;
    cargo(&["test", "--workspace"])
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
