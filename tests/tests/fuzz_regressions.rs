//! Every input kept in `fuzz/regressions/<target>/` (what cargo-fuzz once
//! found) and `fuzz/seeds/<target>/` (where it starts), through the
//! daemon's fuzz targets: none may panic again.

use std::path::Path;

use dnslb_tests::{daemon::workspace_root, targets};

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut replayed = 0;
    for kind in ["regressions", "seeds"] {
        let dir = workspace_root().join("fuzz").join(kind).join(target);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{} fails again", display(&path));
            replayed += 1;
        }
    }
    replayed
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn kept_inputs_pass_every_target() {
    assert!(replay("respond", targets::respond) > 0);
    assert!(replay("tcp", targets::tcp) > 0);
    assert!(replay("zone", targets::zone) > 0);
    assert!(replay("policy", targets::policy) > 0);
}
