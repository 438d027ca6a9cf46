use std::{net::IpAddr, path::Path, time::Duration};

use super::*;
use crate::{
    health::Probe,
    load::{LoadSource, LoadSpec, Mode},
    policy::{AllUp, ClientNet, Draw, Policy},
};

fn example() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dnslb.toml");
    load_config(&path, None).unwrap_or_else(|error| panic!("{error}"))
}

/// `text` parsed; a failure must be one problem, returned.
fn parse(text: &str) -> Result<Config, FileError> {
    parse_config(Path::new("dnslb.toml"), text, None).map_err(|errors| {
        let mut errors: Vec<FileError> = errors.into_iter().collect();
        assert_eq!(errors.len(), 1, "one problem in\n{text}: {errors:?}");
        errors.remove(0)
    })
}

fn addrs(draw: &Draw) -> Vec<IpAddr> {
    let mut out = Vec::new();
    collect(draw, &mut out);
    out.sort();
    out
}

fn collect(draw: &Draw, out: &mut Vec<IpAddr>) {
    match draw {
        Draw::Set { endpoints, .. } => out.extend(endpoints.iter().map(|e| e.addr)),
        Draw::Weighted(choices) => choices.iter().for_each(|(_, d)| collect(d, out)),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn the_readme_example_loads_with_every_policy() {
    let config = example();
    assert_eq!(config.zones.len(), 1);
    assert!(config.zones[0].file.ends_with("examples/example.com.zone"));
    let labels: Vec<&str> = config.services.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "api", "canary", "fast", "geo", "inside", "multi", "near", "rr", "static", "www"
        ]
    );
    let check = |name: &str| config.checks.iter().find(|c| c.name == name).unwrap();
    assert!(matches!(
        check("web").probe,
        Probe::Http {
            tls: false,
            port: 8080,
            ..
        }
    ));
    assert!(matches!(
        check("tls").probe,
        Probe::Http {
            tls: true,
            port: 443,
            ..
        }
    ));
    assert!(matches!(
        check("web_and_ssh").probe,
        Probe::Calculated { min_healthy: 2, .. }
    ));
    assert!(check("draining").invert);
    assert_eq!(check("web").interval, std::time::Duration::from_secs(1));
    assert_eq!((check("web").rise, check("web").fall), (2, 3));

    let service = |label: &str| config.services.iter().find(|s| s.label == label).unwrap();
    let draw = |label: &str, client: &str| {
        service(label).draw(&config.pools, &AllUp, Some(ClientNet::host(ip(client))))
    };
    // Geolocation: Berlin gets the office, Paris the EU pool, Virginia the
    // US pool, anyone else the default.
    assert_eq!(addrs(&draw("geo", "198.18.0.7")), [ip("198.18.40.1")]);
    assert_eq!(addrs(&draw("geo", "198.18.2.7")).len(), 3);
    assert_eq!(addrs(&draw("geo", "198.18.1.7"))[0], ip("198.18.20.1"));
    assert_eq!(addrs(&draw("geo", "192.0.2.1")), [ip("198.18.30.1")]);
    // Latency: the measured network goes to eu-central, US clients to
    // us-east.
    assert_eq!(addrs(&draw("fast", "198.18.0.7")).len(), 3);
    assert_eq!(addrs(&draw("fast", "198.18.1.7")).len(), 2);
    // Geoproximity: Paris is nearer Frankfurt; Virginia nearer Virginia.
    assert_eq!(addrs(&draw("near", "198.18.2.7")).len(), 3);
    assert_eq!(addrs(&draw("near", "198.18.1.7")).len(), 2);
    // IP-based, IPv4 and IPv6.
    assert_eq!(addrs(&draw("inside", "198.18.0.9")), [ip("198.18.40.1")]);
    assert_eq!(addrs(&draw("inside", "2001:db8:1::9")), [ip("198.18.40.1")]);
    assert_eq!(addrs(&draw("inside", "198.18.9.9")).len(), 3);
    // Branch slots carry their labels.
    let branches: Vec<(&str, &str)> = config.branches.iter().map(|(_, s, b)| (s, b)).collect();
    assert!(branches.contains(&("api", "primary")), "{branches:?}");
    assert!(branches.contains(&("fast", "eu-central")), "{branches:?}");
    assert!(branches.contains(&("geo", "BE")), "{branches:?}");
    let weighing = &config.weighing["web-us"];
    assert_eq!(weighing.slow_start, Some(Duration::from_secs(30)));
    assert!(weighing.load.is_some(), "web-us weighs by load");
}

#[test]
fn errors_name_the_file_line_and_problem() {
    let cases = [
        (
            "[pool.a]\nendpoints = [\"198.18.0.300\"]\n",
            2,
            "198.18.0.300",
        ),
        (
            "[pool.a]\nendpoints = []\n\n[service.s]\nname = \"s.example.com.\"\npolicy = { pool = \"nope\" }\n",
            4,
            "no pool named `nope`",
        ),
        (
            "[check.c]\nkind = \"http\"\ninterval = \"soon\"\n",
            3,
            "not a duration",
        ),
        ("[check.c]\nkind = \"tcp\"\n", 1, "needs a `port`"),
        (
            "[check.c]\nkind = \"calculated\"\nchildren = [\"x\"]\n",
            1,
            "no check named `x`",
        ),
        (
            "[pool.a]\ncheck = \"missing\"\n",
            1,
            "no check named `missing`",
        ),
        (
            "[pool.a]\nendpoints = [\"2001:db8::1\"]\n[service.s]\nname = \"s.example.com.\"\ntype = \"A\"\npolicy = { pool = \"a\" }\n",
            3,
            "service is A",
        ),
        (
            "[pool.a]\nendpoints = [\"198.18.0.1\"]\n[service.s]\nname = \"s.example.com.\"\n[service.s.policy]\nkind = \"weighted\"\nbranches = [{ pool = \"a\", weight = 300 }]\n",
            7,
            "weight",
        ),
        (
            "[pool.a]\nendpoints = [\"198.18.0.1\"]\n[service.s]\nname = \"s.\"\npolicy = { kind = \"geolocation\", branches = [{ default = true, pool = \"a\" }] }\n",
            3,
            "needs a [geo] database",
        ),
        ("unknown = 1\n", 1, "unknown field"),
        (
            "[pool.a]\nkind = \"docker\"\ncommand = \"x\"\n",
            1,
            "`command` is for function pools, and this one is docker",
        ),
        (
            "[pool.a]\nkind = \"function\"\ncommand = \"x\"\naddresses = \"198.18.1.1-198.18.1.2\"\n",
            1,
            "needs `port`",
        ),
        (
            "[pool.a]\nkind = \"function\"\ncommand = \"x\"\nport = 80\naddresses = \"198.18.1.1-198.18.1.2\"\nmax = 3\n",
            1,
            "max 3 instances but `addresses` gives 2",
        ),
        (
            "[pool.a]\nkind = \"function\"\ncommand = \"x\"\nport = 80\naddresses = \"198.18.1.1/33\"\n",
            1,
            "give FIRST-LAST or a network",
        ),
        (
            "[pool.a]\nkind = \"function\"\ncommand = \"x\"\nport = 80\naddresses = \"198.18.1.1\"\nfallback = \"b\"\n",
            1,
            "no pool named `b` (the fallback)",
        ),
        (
            "[pool.a]\nkind = \"function\"\ncommand = \"x\"\nport = 80\naddresses = \"198.18.1.1\"\ncold_start = \"wait\"\n",
            6,
            "unknown variant `wait`",
        ),
        ("[pool.a]\nkind = \"lambda\"\n", 1, "unknown kind `lambda`"),
        (
            "[pool.a]\nendpoints = [\"198.18.0.1\"]\nload = { source = \"push\", low = 0.9, high = 0.5 }\n",
            1,
            "load: low = 0.9, high = 0.5: give 0 ≤ low < high",
        ),
        (
            "[pool.a]\nload = { source = \"prometheus\", url = \"http://127.0.0.1:9090\", query = \"up\" }\n",
            1,
            "load: query: give {address} where each endpoint's address goes",
        ),
        (
            "[pool.a]\nload = { source = \"agent\" }\n",
            1,
            "load: port: source = \"agent\" connects",
        ),
        (
            "[pool.a]\nload = { source = \"push\", smoothing = 0 }\n",
            1,
            "load: smoothing = 0",
        ),
        (
            "[pool.a]\nload = { source = \"push\", interval = \"1s\" }\n",
            1,
            "pushed figures are not pulled",
        ),
        (
            "[pool.a]\nload = { source = \"http\", url = \"https://{address}/load\" }\n",
            1,
            "is not an http:// URL",
        ),
        (
            "[pool.a]\nload = { source = \"carrier-pigeon\" }\n",
            2,
            "unknown variant `carrier-pigeon`",
        ),
        (
            "[hook.h]\nurl = \"https://x/\"\n",
            1,
            "give http://HOST:PORT/PATH",
        ),
        (
            "[hook.h]\nurl = \"http://127.0.0.1:9/\"\ncommand = \"cat\"\n",
            1,
            "give `url` or `command`, one of them",
        ),
    ];
    for (text, line, problem) in cases {
        let error = parse(text).expect_err(text);
        assert_eq!(error.line, Some(line), "{error} for\n{text}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("dnslb.toml:{line}: ")),
            "{error}"
        );
        assert!(
            error.problem.contains(problem),
            "{error} should say {problem}"
        );
    }
}

/// A problem deep in a policy tree names the service, the whole branch
/// path to it, and the line of the innermost branch it is in.
#[test]
fn nested_errors_name_the_service_and_the_branch_path() {
    let error = parse(
        "[pool.a]\nendpoints = [\"198.18.0.1\"]\n\
         [service.www]\nname = \"www.example.com\"\n\
         [service.www.policy]\nkind = \"failover\"\n\
         primary = { kind = \"weighted\", branches = [\n\
           { name = \"eu\", weight = 1, pool = \"a\" },\n\
           { name = \"us\", weight = 1, pool = \"nope\" },\n\
         ] }\n\
         secondary = { pool = \"a\" }\n",
    )
    .expect_err("a branch names a missing pool");
    assert_eq!(
        error.to_string(),
        "dnslb.toml:9: service `www`: policy/primary/us: no pool named `nope`"
    );
    assert_eq!(error.path, ["policy", "primary", "us"]);
    // A problem in a failover side (not in a listed branch) is on its line.
    let error = parse(
        "[pool.a]\nendpoints = [\"198.18.0.1\"]\n\
         [service.www]\nname = \"www.example.com\"\n\
         [service.www.policy]\nkind = \"failover\"\n\
         primary = { pool = \"a\" }\n\
         secondary = { pool = \"gone\" }\n",
    )
    .expect_err("the secondary names a missing pool");
    assert_eq!(error.line, Some(8), "{error}");
}

#[test]
fn shorthand_and_defaults() {
    let config = parse(
        "[pool.a]\nendpoints = [\"198.18.0.1\", \"198.18.0.2\"]\n\
         [service.s]\nname = \"s.example.com\"\npolicy = { pool = \"a\" }\n",
    )
    .unwrap();
    let service = &config.services[0];
    assert_eq!(
        (service.ttl, service.record_type),
        (60, hickory_proto::rr::RecordType::A)
    );
    assert!(matches!(
        service.policy,
        Policy::Pool {
            pick: crate::policy::Pick::Healthy {
                answers: usize::MAX
            },
            ..
        }
    ));
    assert_eq!(service.name.to_name().to_string(), "s.example.com.");
}

#[test]
fn branch_slots_survive_a_reload() {
    let text = "[pool.a]\nendpoints = [\"198.18.0.1\"]\n[pool.b]\nendpoints = [\"198.18.0.2\"]\n\
                [service.s]\nname = \"s.\"\n[service.s.policy]\nkind = \"failover\"\n\
                primary = { pool = \"a\" }\nsecondary = { pool = \"b\" }\n";
    let first = parse(text).unwrap();
    let swapped = text.replace(
        "primary = { pool = \"a\" }\nsecondary = { pool = \"b\" }",
        "primary = { pool = \"b\" }\nsecondary = { pool = \"a\" }",
    );
    let second = parse_config(Path::new("x"), &swapped, Some(&first.branches)).unwrap();
    let slots = |config: &Config| {
        let mut slots: Vec<(u16, String)> = config
            .branches
            .iter()
            .map(|(slot, _, b)| (slot, b.to_owned()))
            .collect();
        slots.sort();
        slots
    };
    assert_eq!(slots(&first), slots(&second));
}

/// `allow_transfer` names the networks that may transfer a zone, `notify`
/// the secondaries told of changes, `primary` where a secondary zone is
/// copied from; a bad one is refused on its zone's line.
#[test]
fn zones_say_who_may_transfer_them() {
    let config = parse(
        "[[zone]]\norigin = \"example.com\"\nfile = \"../examples/example.com.zone\"\n\
         allow_transfer = [\"198.18.0.0/24\", \"2001:db8::53\"]\n\
         notify = [\"198.18.0.3:53\", \"[2001:db8::3]:5353\"]\n",
    )
    .expect("valid");
    fn texts(items: &[impl ToString]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }
    let transfer = &config.zones[0].transfer;
    assert_eq!(
        texts(&transfer.notify),
        ["198.18.0.3:53", "[2001:db8::3]:5353"]
    );
    let allowed = texts(&transfer.allow);
    assert_eq!(allowed, ["198.18.0.0/24", "2001:db8::53/128"]);
    let error = parse(
        "[pool.a]\nendpoints = [\"198.18.0.1\"]\n\
         [[zone]]\norigin = \"example.com\"\nfile = \"../examples/example.com.zone\"\n\
         allow_transfer = [\"198.18.0.0/33\"]\n",
    )
    .expect_err("a prefix too long");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.to_string().contains("allow_transfer"), "{error}");
    let error = parse(
        "[[zone]]\norigin = \"example.com\"\nfile = \"../examples/example.com.zone\"\n\
         allow_transfer = [\"192.0.2.7/24\"]\n",
    )
    .expect_err("host bits");
    assert_eq!(error.line, Some(1), "{error}");
    assert!(
        error.to_string().contains(
            "allow_transfer: `192.0.2.7/24` has bits set past its /24 prefix: the network is 192.0.2.0/24"
        ),
        "{error}"
    );
    let error = parse(
        "[[zone]]\norigin = \"example.com\"\nfile = \"../examples/example.com.zone\"\n\
         notify = [\"198.18.0.3\"]\n",
    )
    .expect_err("no port");
    assert!(
        error.to_string().contains("notify: `198.18.0.3`"),
        "{error}"
    );
    let error = parse(
        "[[zone]]\norigin = \"example.com\"\nfile = \"copy.zone\"\nprimary = \"primary.example\"\n",
    )
    .expect_err("not an address");
    assert!(
        error.to_string().contains("primary: `primary.example`"),
        "{error}"
    );
}

/// `dnssec = "online"` and the `[zone.dnssec]` table; each mistake on
/// its zone's line.
#[test]
fn zones_say_how_they_are_signed() {
    let zone = "[[zone]]\norigin = \"example.com\"\nfile = \"../examples/example.com.zone\"\n";
    let online = parse(&format!("{zone}dnssec = \"online\"\n")).expect("valid");
    assert_eq!(
        online.zones[0].dnssec,
        Some(crate::signer::SigningPolicy::default())
    );
    let table = parse(&format!(
        "{zone}[zone.dnssec]\nalgorithm = \"ed25519\"\nkeys = \"split\"\n\
         zsk_lifetime = \"7d\"\nvalidity = \"6h\"\ndnskey_ttl = 300\n"
    ))
    .expect("valid");
    let policy = table.zones[0].dnssec.clone().expect("signed");
    assert_eq!(
        policy.algorithm,
        crate::signer::keyfile::KeyAlgorithm::Ed25519
    );
    assert!(policy.split);
    assert_eq!(policy.zsk_lifetime, Duration::from_secs(7 * 86_400));
    assert_eq!(policy.validity, Duration::from_secs(6 * 3600));
    assert_eq!(policy.dnskey_ttl, 300);
    for (text, problem) in [
        (
            "dnssec = \"offline\"\n",
            "dnssec: `offline` is not a way to sign",
        ),
        (
            "[zone.dnssec]\nkeys = \"many\"\n",
            "dnssec: keys: `many` is neither",
        ),
        (
            "[zone.dnssec]\nkeys = \"split\"\nzsk_lifetime = \"1h\"\n",
            "zsk_lifetime: 3600s leaves no time to publish a successor",
        ),
        (
            "[zone.dnssec]\nvalidity = \"5s\"\n",
            "validity: at least 10s",
        ),
    ] {
        let error = parse(&format!("{zone}{text}")).expect_err(text);
        assert_eq!(error.line, Some(1), "{error}");
        assert!(error.to_string().contains(problem), "{problem} in {error}");
    }
    let error = parse(
        "[[zone]]\norigin = \"example.com\"\nfile = \"copy.zone\"\nprimary = \"198.18.0.1:53\"\ndnssec = \"online\"\n",
    )
    .expect_err("a secondary");
    assert!(
        error.to_string().contains("sign it on the primary"),
        "{error}"
    );
    // Its secondaries get a signed copy.
    parse(&format!(
        "{zone}dnssec = \"online\"\nallow_transfer = [\"198.18.0.0/24\"]\n"
    ))
    .expect("a signed zone with secondaries");
}

/// `[anycast]`: defaults, and each mistake on its line.
#[test]
fn anycast_addresses_their_interface_and_upstream_pools() {
    let config = parse(
        "[pool.web]\nendpoints = [\"198.18.0.1\"]\n\
         [anycast]\naddresses = [\"198.18.99.1\", \"2001:db8::99\"]\npools = [\"web\"]\n",
    )
    .unwrap();
    let anycast = config.anycast.expect("[anycast]");
    assert_eq!(anycast.addresses, [ip("198.18.99.1"), ip("2001:db8::99")]);
    assert_eq!(anycast.interface, "dnslb0");
    assert_eq!(anycast.pools, ["web"]);
    assert_eq!(anycast.grace, std::time::Duration::from_secs(2));
    for (text, problem) in [
        ("[anycast]\naddresses = []\n", "`addresses` is empty"),
        (
            "[anycast]\naddresses = [\"198.18.99.1\"]\npools = [\"nope\"]\n",
            "no pool named `nope`",
        ),
        (
            "[anycast]\naddresses = [\"198.18.99.1\"]\ninterface = \"a-name-far-too-long\"\n",
            "is not an interface name",
        ),
    ] {
        let error = parse(text).expect_err(problem);
        assert_eq!(error.line, Some(1), "{error}");
        assert!(error.to_string().contains(problem), "{error}");
    }
}

/// A check's verdict in a fleet: the fleet's by default (Route 53's 0.18),
/// its own `min_fraction`, or this node's alone.
#[test]
fn checks_take_the_fleet_verdict_unless_told_otherwise() {
    use crate::health::VerdictScope;
    let check = |extra: &str| {
        parse(&format!("[check.c]\nkind = \"tcp\"\nport = 80\n{extra}"))
            .map(|config| config.checks[0].verdict)
    };
    assert_eq!(
        check("").unwrap(),
        VerdictScope::Fleet { min_fraction: 0.18 }
    );
    assert_eq!(
        check("min_fraction = 0.5\n").unwrap(),
        VerdictScope::Fleet { min_fraction: 0.5 }
    );
    assert_eq!(check("verdict = \"local\"\n").unwrap(), VerdictScope::Local);
    for bad in [
        "min_fraction = 0.0\n",
        "min_fraction = 1.5\n",
        "verdict = \"local\"\nmin_fraction = 0.5\n",
    ] {
        let error = check(bad).expect_err(bad);
        assert!(error.to_string().contains("min_fraction"), "{bad}: {error}");
    }
}

/// A network with bits set past its prefix is an error on its branch's
/// line that names the network meant: `10.1.2.3/8` for `/28` would
/// capture a whole network.
#[test]
fn a_network_with_host_bits_is_refused_on_its_line() {
    let error = parse(
        "[pool.lan]\nendpoints = [\"198.18.20.1\"]\n\
         [service.near]\nname = \"near.example.com.\"\n\
         [service.near.policy]\nkind = \"ip\"\nbranches = [\n\
         { name = \"lan\", cidrs = [\"10.1.2.3/8\"], pool = \"lan\" },\n\
         { default = true, pool = \"lan\" },\n]\n",
    )
    .expect_err("host bits");
    assert_eq!(error.line, Some(8), "{error}");
    assert!(
        error
            .to_string()
            .contains("`10.1.2.3/8` has bits set past its /8 prefix: the network is 10.0.0.0/8"),
        "{error}"
    );
}

/// Every problem in the file, each on its line: a bad check, a pool that
/// names no check, a service with no pool, and two services on one name.
/// A pool naming the bad check and a service using the pool that failed
/// are not reported again.
#[test]
fn every_problem_is_reported_on_its_line() {
    let text = "\
[check.web]
kind = \"http\"
interval = \"0s\"

[pool.a]
endpoints = [\"198.18.0.1\"]
check = \"web\"

[pool.b]
endpoints = [\"198.18.0.2\"]
check = \"nope\"

[service.one]
name = \"www.example.com.\"
policy = { pool = \"a\" }

[service.two]
name = \"two.example.com.\"
policy = { pool = \"missing\" }

[service.three]
name = \"www.example.com.\"
policy = { pool = \"b\" }
";
    let errors: Vec<String> = parse_config(Path::new("dnslb.toml"), text, None)
        .expect_err("four problems")
        .into_iter()
        .map(|error| error.to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "dnslb.toml:1: check `web`: interval and timeout must be above zero, timeout at most interval",
            "dnslb.toml:9: pool `b`: no check named `nope`",
            "dnslb.toml:17: service `two`: policy: no pool named `missing`",
            "dnslb.toml:21: service `three`: service `one` answers www.example.com. A already",
        ]
    );
}

/// A TSIG secret kept in a file beside the policy: read from there, and a
/// file anyone may read is refused on the key's line.
#[test]
fn a_tsig_secret_comes_from_its_file_which_others_may_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("dnslb-config-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("transfer.key");
    std::fs::write(&key, "c2VjcmV0IGZvciB0aGUgdGVzdA==\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = "[pool.a]\nendpoints = [\"198.18.0.1\"]\n\
                [tsig_key.transfer]\nsecret_file = \"transfer.key\"\n";
    let policy = dir.join("dnslb.toml");
    parse_config(&policy, text, None).expect("the secret read from its file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let errors: Vec<FileError> = parse_config(&policy, text, None)
        .expect_err("readable by anyone")
        .into_iter()
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, Some(3), "{}", errors[0]);
    assert!(
        errors[0].problem.contains("anyone on the host can read it"),
        "{}",
        errors[0]
    );
    let both = text.replace("secret_file", "secret = \"c2VjcmV0\"\nsecret_file");
    assert!(
        parse_config(&policy, &both, None).is_err(),
        "secret and secret_file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_and_slow_start_fill_in_their_defaults() {
    let config = parse(
        "[pool.a]\nendpoints = [\"198.18.0.1\"]\nslow_start = \"30s\"\n\
         load = { source = \"agent\", port = 9777, mode = \"inverse\", capacity = 200 }\n\
         [pool.b]\nendpoints = [\"198.18.0.2\"]\n",
    )
    .expect("valid");
    let weighing = &config.weighing["a"];
    assert_eq!(weighing.slow_start, Some(Duration::from_secs(30)));
    let load = weighing.load.as_ref().expect("a load spec");
    assert_eq!(
        load.source,
        LoadSource::Agent {
            port: 9777,
            interval: Duration::from_secs(2)
        }
    );
    assert_eq!(load.mode, Mode::Inverse);
    assert_eq!(load.capacity, Some(200.0));
    assert_eq!(load.smoothing, LoadSpec::DEFAULT_SMOOTHING);
    // Three pulls' worth.
    assert_eq!(load.expire, Duration::from_secs(6));
    assert!(
        !config.weighing.contains_key("b"),
        "b weighs by its weights"
    );
}
