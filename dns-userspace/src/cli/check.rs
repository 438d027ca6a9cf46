//! `dnslb check`: the policy file and zone files checked as `dnslb run`
//! would load them, without a daemon. Every file is checked, and every
//! problem printed as `file:line: problem`.

use super::{CheckArgs, ZoneArg};
use crate::{
    config::load_config,
    steering::unanswerable_services,
    zone::{Catalog, load_zone},
};

/// Checks the files of `args`; returns the problems found, one a line,
/// and what was checked.
pub fn check(args: &CheckArgs) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let config = args
        .config
        .as_ref()
        .and_then(|path| match load_config(path, None) {
            Ok(config) => Some(config),
            Err(errors) => {
                problems.extend(errors.into_iter().map(|error| error.to_string()));
                None
            }
        });
    let zones: Vec<&ZoneArg> = args
        .zones
        .iter()
        .chain(config.iter().flat_map(|config| &config.zones))
        .collect();
    let mut catalog = Catalog::default();
    let mut zones_read = true;
    for zone in &zones {
        match load_zone(&zone.origin, &zone.file) {
            Ok(loaded) => catalog.insert(loaded),
            Err(error) => {
                problems.push(error.to_string());
                zones_read = false;
            }
        }
    }
    if let Some(config) = &config
        && zones_read
    {
        let outside = unanswerable_services(config, &catalog);
        problems.extend(outside.iter().map(ToString::to_string));
    }
    let services = config.as_ref().map_or(0, |c| c.services.len());
    let summary = format!("{} zones and {services} services checked", zones.len());
    (problems, summary)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hickory_proto::rr::Name;

    use super::*;

    const GOOD_ZONE: &str = "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.1\n";

    /// Writes `text` to `name` in this test process's scratch directory.
    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dnslb-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn zone(origin: &str, file: PathBuf) -> ZoneArg {
        ZoneArg {
            origin: Name::from_ascii(origin).unwrap(),
            file,
            transfer: Default::default(),
            dnssec: None,
        }
    }

    #[test]
    fn every_bad_file_is_named_with_its_line() {
        let good = file("good.zone", GOOD_ZONE);
        let bad = file(
            "bad.zone",
            &GOOD_ZONE.replace("ns A 198.18.0.1", "www A 300.1.2.3"),
        );
        let policy = file(
            "dnslb.toml",
            "[service.www]\nname = \"www.example.\"\npolicy = { pool = \"nope\" }\n",
        );
        let args = CheckArgs {
            config: Some(policy.clone()),
            zones: vec![
                zone("good.example.", good),
                zone("bad.example.", bad.clone()),
            ],
        };
        let (problems, _) = check(&args);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("{}:1: ", policy.display())),
            "{problems:?}"
        );
        assert!(problems[0].contains("no pool named `nope`"), "{problems:?}");
        assert!(
            problems[1].starts_with(&format!("{}:4: ", bad.display())),
            "{problems:?}"
        );
    }

    /// A service cannot answer in a zone signed elsewhere: dnslb has no
    /// key to sign its answers with.
    #[test]
    fn a_service_in_a_zone_signed_elsewhere_is_a_problem_on_its_line() {
        let signed =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/zones/signed.test.nsec.zone");
        let policy = file(
            "signed.toml",
            "[pool.web]\nendpoints = [\"198.18.0.9\"]\n\n\
             [service.www]\nname = \"www.signed.test.\"\npolicy = { pool = \"web\" }\n",
        );
        let (problems, _) = check(&CheckArgs {
            config: Some(policy.clone()),
            zones: vec![zone("signed.test.", signed)],
        });
        assert_eq!(
            problems,
            [format!(
                "{}:4: service `www`: www.signed.test. is in signed.test., a zone signed elsewhere: \
                 dnslb cannot sign the service's answers",
                policy.display()
            )]
        );
    }

    #[test]
    fn good_files_pass() {
        let good = file("ok.zone", GOOD_ZONE);
        let (problems, summary) = check(&CheckArgs {
            config: None,
            zones: vec![zone("ok.example.", good)],
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(summary, "1 zones and 0 services checked");
    }
}
