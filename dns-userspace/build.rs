//! Compiles the XDP program (`dns-ebpf`) for `bpfel-unknown-none` and leaves
//! the object in `OUT_DIR`, where `dataplane::object` embeds it.
//!
//! Building eBPF needs a compiler that can rebuild `core` from source: either
//! Debian's `rustc-web` with `rust-web-src` (used through
//! `RUSTC_BOOTSTRAP=1`), or a rustup nightly with `rust-src`. `cargo xtask
//! setup` installs the former, and `bpf-linker`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("dns-userspace lives in the workspace");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in [
        "dns-ebpf/src",
        "dns-ebpf/Cargo.toml",
        "dns-common/src",
        "dns-common/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let target_dir = out_dir.join("ebpf-target");
    let mut cargo = bpf_cargo();
    // Start from a clean slate: what the outer build sets for the host
    // (wrappers such as clippy's, flags, target) must not leak into it.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_")
            || key.starts_with("RUSTC_WORKSPACE_WRAPPER")
            || key == "RUSTC_WRAPPER"
            || key == "RUSTFLAGS"
        {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
        .current_dir(workspace)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "build",
            "--package",
            "dns-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    let status = cargo.status().unwrap_or_else(|error| {
        panic!("cannot run cargo for the eBPF build: {error}; run `cargo xtask setup`")
    });
    if !status.success() {
        panic!(
            "building dns-ebpf for bpfel-unknown-none failed; if the toolchain is missing, run `cargo xtask setup`"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/dns-ebpf");
    std::fs::copy(&object, out_dir.join("dns-ebpf.o"))
        .unwrap_or_else(|error| panic!("cannot copy {}: {error}", object.display()));
}

/// A cargo invocation whose rustc can build `core` for the BPF target.
fn bpf_cargo() -> Command {
    if Path::new(DEBIAN_RUSTC).exists() && Path::new(DEBIAN_RUST_SRC).exists() {
        let cargo = if Path::new("/usr/bin/cargo").exists() {
            "/usr/bin/cargo"
        } else {
            "cargo"
        };
        let mut command = Command::new(cargo);
        command.env("RUSTC", DEBIAN_RUSTC);
        return command;
    }
    let mut command = Command::new("rustup");
    command.args(["run", "nightly", "cargo"]);
    command
}
