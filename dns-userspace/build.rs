//! Compiles the XDP program (`dns-ebpf`) into `OUT_DIR/dns-ebpf.o`, where
//! `dataplane::program` embeds it.

fn main() {
    ebpf_build::build(
        "dns-ebpf",
        &[
            "dns-ebpf/src",
            "dns-ebpf/Cargo.toml",
            "dns-common/src",
            "dns-common/Cargo.toml",
        ],
    );
}
