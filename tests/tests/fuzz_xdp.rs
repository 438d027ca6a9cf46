//! The XDP program fuzzed through `BPF_PROG_TEST_RUN` (`dnslb_tests::fuzz`):
//! a share of the million frames `cargo xtask fuzz` runs, from a seed of
//! its own each run (printed, to replay a failure).

use dnslb_tests::fuzz;

/// Frames per `cargo xtask test` run; `cargo xtask fuzz` sets
/// `DNSLB_FUZZ_FRAMES` to 1,000,000.
const FRAMES: u64 = 50_000;

fn from_env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn fuzzed_frames_are_passed_unchanged_dropped_as_responses_or_answered_as_the_daemon_answers() {
    let frames = from_env("DNSLB_FUZZ_FRAMES").unwrap_or(FRAMES);
    let seed = from_env("DNSLB_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
    });
    eprintln!("fuzzing {frames} frames with DNSLB_FUZZ_SEED={seed}");
    let report = fuzz::run(frames, seed).unwrap_or_else(|violation| panic!("{violation}"));
    eprintln!("{report:?}");
    // The corpus reaches every verdict.
    assert!(report.answered > frames / 50, "{report:?}");
    assert!(
        report.dropped > 0 && report.passed > frames / 4,
        "{report:?}"
    );
}
