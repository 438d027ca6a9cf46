//! Compiling eBPF crates of this workspace from build scripts.
//!
//! Building for `bpfel-unknown-none` needs a compiler that can rebuild
//! `core` from source: Debian's `rustc-web` with `rust-web-src` (used
//! through `RUSTC_BOOTSTRAP=1`), or a rustup nightly with `rust-src`; and
//! `bpf-linker` on `PATH`. `cargo xtask setup` installs them.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";

/// A toolchain that can build `core` for the BPF target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// Debian's `rustc-web` and `rust-web-src`.
    DebianRustcWeb,
    /// A rustup nightly with the `rust-src` component.
    RustupNightly,
}

impl Toolchain {
    /// The first toolchain this machine has, if any.
    pub fn find() -> Option<Toolchain> {
        if Path::new(DEBIAN_RUSTC).exists() && Path::new(DEBIAN_RUST_SRC).exists() {
            return Some(Toolchain::DebianRustcWeb);
        }
        let sysroot = Command::new("rustup")
            .args(["run", "nightly", "rustc", "--print", "sysroot"])
            .output()
            .ok()
            .filter(|out| out.status.success())?;
        let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
        sysroot
            .join("lib/rustlib/src/rust/library")
            .exists()
            .then_some(Toolchain::RustupNightly)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Toolchain::DebianRustcWeb => "Debian rustc-web with rust-web-src",
            Toolchain::RustupNightly => "rustup nightly with rust-src",
        }
    }

    fn cargo(self) -> Command {
        match self {
            Toolchain::DebianRustcWeb => {
                let cargo = if Path::new(DEBIAN_CARGO).exists() {
                    DEBIAN_CARGO
                } else {
                    "cargo"
                };
                let mut command = Command::new(cargo);
                command.env("RUSTC", DEBIAN_RUSTC);
                command
            }
            Toolchain::RustupNightly => {
                let mut command = Command::new("rustup");
                command
                    .args(["run", "nightly", "cargo"])
                    .env_remove("RUSTC");
                command
            }
        }
    }
}

/// From a build script: compiles the workspace package `package` (whose
/// binary has the same name) for `bpfel-unknown-none`, copies the object
/// to `OUT_DIR/<package>.o` and returns that path. `watch` lists the
/// workspace-relative paths whose changes require a rebuild.
pub fn build(package: &str, watch: &[&str]) -> PathBuf {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .expect("the package lives in a workspace with a Cargo.lock");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in watch {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let toolchain = Toolchain::find().unwrap_or_else(|| {
        panic!(
            "no toolchain can build eBPF (see the ebpf-build crate docs); run `cargo xtask setup`"
        )
    });
    // One target directory for every eBPF crate and every host profile
    // (check, dev, test, release): `core` for the BPF target is built once,
    // not once per build script. The inner cargo's lock serializes build
    // scripts that run at the same time.
    let target_dir = workspace.join("target").join("ebpf");
    let mut cargo = toolchain.cargo();
    // What the outer build sets for the host (clippy's wrapper, flags,
    // the target) must not leak into the eBPF build.
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
        // Unaligned loads and stores as single instructions rather than
        // byte by byte: packet headers sit at any alignment, and the
        // verifier accepts misaligned packet and map access wherever the
        // CPU handles it (x86-64, arm64). Misaligned stack access it
        // refuses, and says so at load.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+allows-misaligned-mem-access",
        )
        .args([
            "build",
            "--package",
            package,
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
            "building {package} for bpfel-unknown-none failed; if the toolchain is missing, run `cargo xtask setup`"
        );
    }
    let built = target_dir.join("bpfel-unknown-none/release").join(package);
    let object = out_dir.join(format!("{package}.o"));
    std::fs::copy(&built, &object)
        .unwrap_or_else(|error| panic!("cannot copy {}: {error}", built.display()));
    object
}
