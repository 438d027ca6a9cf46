//! Compiles the load generator's reply sink (`tests/sink-ebpf`) into
//! `OUT_DIR/sink-ebpf.o`.

fn main() {
    ebpf_build::build(
        "sink-ebpf",
        &[
            "tests/sink-ebpf/src",
            "tests/sink-ebpf/Cargo.toml",
            "dns-common/src",
        ],
    );
}
