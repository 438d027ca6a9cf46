//! Compiles the floor program (`bench/floor-ebpf`) into `OUT_DIR/floor-ebpf.o`.

fn main() {
    ebpf_build::build(
        "floor-ebpf",
        &["bench/floor-ebpf/src", "bench/floor-ebpf/Cargo.toml"],
    );
}
