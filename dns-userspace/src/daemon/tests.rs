//! The control path without the kernel: a real `Live` (no XDP) behind the
//! real router on a unix socket, driven by the CLI's client. Needs no root.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use clap::Parser;
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RecordType},
};

use super::{Live, LiveParts, cookies::Cookies, kept::Kept, load_at_start};
use crate::{
    api::{
        self,
        client::{Client, ClientError, Target},
        types::{
            Applied, EndpointInfo, EndpointRef, HealthRow, ServiceDetail, ServiceInfo, Status,
            ZoneInfo, ZoneLoad, ZoneSource,
        },
    },
    backends::Backends,
    cli::{Cli, Command},
    hooks::Hooks,
    metrics::Metrics,
    server::{Responder, Transport},
    shared::Shared,
    steering::{Steering, SteeringCollector},
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("dnslb-live-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ZONE: &str = "$TTL 60\n@ SOA ns h 7 2 3 4 5\n@ NS ns\nns A 198.18.0.2\nwww A 198.18.1.1\n";
const POLICY: &str = "[pool.web]\nendpoints = [\"198.18.2.1\", \"198.18.2.2\"]\n\
                      [service.web]\nname = \"web.example.\"\npolicy = { kind = \"multivalue\", pool = \"web\" }\n";

/// A daemon's running state without XDP, its control API on a socket in
/// `scratch`, and a client for it.
async fn start(scratch: &Scratch) -> (Arc<Live>, Client) {
    start_with(scratch, POLICY).await
}

/// As [`start`], with `policy` for the policy file.
async fn start_with(scratch: &Scratch, policy: &str) -> (Arc<Live>, Client) {
    let zone = scratch.write("example.zone", ZONE);
    let policy = scratch.write("dnslb.toml", policy);
    let socket = scratch.0.join("control.sock");
    let cli = Cli::try_parse_from([
        "dnslb".as_ref(),
        "run".as_ref(),
        "--no-xdp".as_ref(),
        std::ffi::OsStr::new("--zone"),
        format!("example.={}", zone.display()).as_ref(),
        "--config".as_ref(),
        policy.as_os_str(),
        "--state-dir".as_ref(),
        scratch.0.as_os_str(),
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        unreachable!()
    };
    let loaded = load_at_start(&args).unwrap();
    let responder = Arc::new(Responder::new(loaded.catalog.clone(), 1232));
    let hooks = Hooks::none();
    let steering = Steering::start(
        loaded.config.clone(),
        responder.clone(),
        None,
        hooks.clone(),
        Kept::new(args.state_dir.clone()).overrides().unwrap(),
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    metrics.register(Box::new(SteeringCollector::new(Arc::downgrade(&steering))));
    let backends = Backends::new(
        steering.clone(),
        scratch.0.clone(),
        metrics.registry(),
        hooks.clone(),
    );
    backends.apply(&loaded.config.sources).unwrap();
    let cookies = Arc::new(Shared::new("cookies", Cookies::start(&args).unwrap()));
    let live = Arc::new(Live::new(
        (*args).clone(),
        &loaded,
        LiveParts {
            responder,
            steering,
            backends,
            hooks,
            dataplane: None,
            cookies,
            metrics,
            fleet: None,
            anycast: None,
        },
    ));
    let mut tasks = tokio::task::JoinSet::new();
    let plane: Arc<dyn api::ControlPlane> = live.clone();
    let errors = live.metrics.accept_errors("control");
    api::server::ControlListeners::bind(&socket, None)
        .await
        .unwrap()
        .serve(api::server::router(plane), &errors, &mut tasks);
    // The server runs as long as the runtime.
    tasks.detach_all();
    (live, Client::new(Target::Unix(socket)))
}

/// The A records `live` answers `name` with, or the rcode.
fn ask(live: &Live, name: &str) -> Result<Vec<IpAddr>, ResponseCode> {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let answer = live
        .responder
        .respond(
            &query.to_vec().unwrap(),
            "192.0.2.1".parse().unwrap(),
            Transport::Udp,
        )
        .unwrap();
    let answer = Message::from_vec(&answer).unwrap();
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(answer.metadata.response_code);
    }
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_changes_are_all_or_nothing() {
    let scratch = Scratch::new("zones");
    let (live, client) = start(&scratch).await;
    let status: Status = client.get("/v1/status").await.unwrap();
    assert_eq!(
        (status.xdp_mode.as_str(), status.zones, status.services),
        ("off", 1, 1)
    );

    let other = scratch.write("other.zone", &ZONE.replace("198.18.1.1", "198.18.9.9"));
    let applied: Applied = client
        .put(
            "/v1/zones/other.test",
            &ZoneLoad {
                file: other.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(applied.zones, 2);
    assert_eq!(
        ask(&live, "www.other.test."),
        Ok(vec!["198.18.9.9".parse().unwrap()])
    );

    let broken = scratch.write("broken.zone", &ZONE.replace("198.18.1.1", "1.2.3"));
    let refused = client
        .put::<_, Applied>(
            "/v1/zones/other.test",
            &ZoneLoad {
                file: broken.clone(),
            },
        )
        .await
        .unwrap_err();
    match refused {
        ClientError::Refused { status, message } => {
            assert_eq!(status, 400);
            assert!(
                message.starts_with(&format!("{}:5: ", broken.display())),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        ask(&live, "www.other.test."),
        Ok(vec!["198.18.9.9".parse().unwrap()])
    );

    // A service answers in example.: the zone cannot go.
    let refused = client
        .delete::<Applied>("/v1/zones/example")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("service `web`"), "{refused}");
    assert_eq!(
        ask(&live, "www.example."),
        Ok(vec!["198.18.1.1".parse().unwrap()])
    );

    let zones: Vec<ZoneInfo> = client.get("/v1/zones").await.unwrap();
    let listed: Vec<(&str, u32)> = zones
        .iter()
        .map(|z| (z.origin.as_str(), z.serial))
        .collect();
    assert_eq!(listed, [("example.", 7), ("other.test.", 7)]);
    client
        .delete::<Applied>("/v1/zones/other.test")
        .await
        .unwrap();
    assert_eq!(ask(&live, "www.other.test."), Err(ResponseCode::Refused));
    let missing = client
        .delete::<Applied>("/v1/zones/other.test")
        .await
        .unwrap_err();
    assert!(matches!(missing, ClientError::Refused { status, .. } if status == 404));

    // The API's removal outlives a reload of the files.
    let applied: Applied = client.post("/v1/reload", None::<&()>).await.unwrap();
    assert_eq!(applied.zones, 1);
    assert_eq!(live.metrics.changes.refused.get(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn drains_and_weights_reach_the_answers_and_outlive_reloads() {
    let scratch = Scratch::new("drain");
    let (live, client) = start(&scratch).await;
    assert_eq!(ask(&live, "web.example.").map(|a| a.len()), Ok(2));
    let drain = EndpointRef {
        address: "198.18.2.2".parse().unwrap(),
        pool: Some("web".into()),
    };
    let () = client
        .post("/v1/endpoints/drain", Some(&drain))
        .await
        .unwrap();
    assert_eq!(
        ask(&live, "web.example."),
        Ok(vec!["198.18.2.1".parse().unwrap()])
    );
    let () = client
        .post("/v1/reload", None::<&()>)
        .await
        .map(|_: Applied| ())
        .unwrap();
    assert_eq!(
        ask(&live, "web.example."),
        Ok(vec!["198.18.2.1".parse().unwrap()])
    );
    let endpoints: Vec<EndpointInfo> = client.get("/v1/endpoints?pool=web").await.unwrap();
    assert_eq!(
        endpoints.iter().map(|e| e.drained).collect::<Vec<_>>(),
        [false, true]
    );
    let () = client
        .post("/v1/endpoints/undrain", Some(&drain))
        .await
        .unwrap();
    assert_eq!(ask(&live, "web.example.").map(|a| a.len()), Ok(2));

    let unknown = EndpointRef {
        address: "198.18.2.9".parse().unwrap(),
        pool: None,
    };
    let refused = client
        .post::<_, ()>("/v1/endpoints/drain", Some(&unknown))
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "no endpoint 198.18.2.9 in any pool");
}

/// Drained means drained: a drained endpoint is not answered even when
/// every other endpoint is down (the all-down rule answers the failed ones
/// only), with every endpoint drained none is, and the service says that
/// it is failing, open or closed, and why.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_endpoint_is_never_answered_whatever_else_is_down() {
    // Both endpoints fail their check: nothing listens on port 1.
    const FAILING: &str = "[check.closed]\nkind = \"tcp\"\nport = 1\ninterval = \"50ms\"\ntimeout = \"50ms\"\n\
                           [pool.web]\ncheck = \"closed\"\nendpoints = [\"127.0.0.1\", \"127.0.0.2\"]\n\
                           [service.web]\nname = \"web.example.\"\npolicy = { kind = \"multivalue\", pool = \"web\" }\n";
    let scratch = Scratch::new("drained");
    let (live, client) = start_with(&scratch, FAILING).await;
    let standing = || async {
        let detail: ServiceDetail = client.get("/v1/services/web").await.unwrap();
        (detail.service.standing, detail.service.standing_reason)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while standing().await.0 != "failing open" {
        assert!(
            std::time::Instant::now() < deadline,
            "the checks never failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut both = ask(&live, "web.example.").unwrap();
    both.sort();
    assert_eq!(
        both,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "127.0.0.2".parse().unwrap()
        ]
    );
    let listed: Vec<ServiceInfo> = client.get("/v1/services").await.unwrap();
    assert_eq!(listed[0].standing, "failing open");
    // `dnslb health` says why the checks fail, `endpoint list` that the
    // endpoints are down.
    let rows: Vec<HealthRow> = client.get("/v1/health").await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(
            row.last_failure
                .to_lowercase()
                .contains("connection refused"),
            "{row:?}"
        );
    }
    assert!(crate::cli::render::health(&rows).contains(&rows[0].last_failure));
    let endpoints: Vec<EndpointInfo> = client.get("/v1/endpoints").await.unwrap();
    let states = |endpoints: &[EndpointInfo]| -> Vec<String> {
        crate::cli::render::endpoints(endpoints)
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    };
    assert_eq!(states(&endpoints), ["down", "down"]);

    let drain = |address: &str| EndpointRef {
        address: address.parse().unwrap(),
        pool: None,
    };
    let () = client
        .post("/v1/endpoints/drain", Some(&drain("127.0.0.2")))
        .await
        .unwrap();
    assert_eq!(
        ask(&live, "web.example."),
        Ok(vec!["127.0.0.1".parse().unwrap()]),
        "the all-down rule answers the failed endpoint, not the drained one"
    );
    assert_eq!(standing().await.0, "failing open");

    let () = client
        .post("/v1/endpoints/drain", Some(&drain("127.0.0.1")))
        .await
        .unwrap();
    assert_eq!(
        ask(&live, "web.example."),
        Ok(vec![]),
        "nothing drained is answered"
    );
    let endpoints: Vec<EndpointInfo> = client.get("/v1/endpoints").await.unwrap();
    assert_eq!(states(&endpoints), ["drained", "drained"]);
    assert_eq!(
        standing().await,
        (
            "failing closed".to_owned(),
            "every endpoint is drained or not ready: answering none".to_owned()
        )
    );
    let detail: ServiceDetail = client.get("/v1/services/web").await.unwrap();
    assert!(
        crate::cli::render::service(&detail)
            .contains("FAILING CLOSED: every endpoint is drained or not ready: answering none"),
        "service show says so"
    );
    let metrics = live.metrics.render();
    for series in [
        "dnslb_service_failing{how=\"closed\",service=\"web\"} 1",
        "dnslb_service_failing{how=\"open\",service=\"web\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}

/// A drain that cannot be kept across restarts is refused whole: an
/// operator never has a drain in force that the next start would forget.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_cannot_be_kept_is_refused() {
    let scratch = Scratch::new("unkept");
    let (live, client) = start(&scratch).await;
    // A directory where the file must go: it cannot be replaced.
    std::fs::create_dir_all(scratch.0.join("overrides.json")).unwrap();
    let drain = EndpointRef {
        address: "198.18.2.2".parse().unwrap(),
        pool: None,
    };
    let refused = client
        .post::<_, ()>("/v1/endpoints/drain", Some(&drain))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.starts_with("keeping the change across restarts: ")
            && refused.contains("overrides.json"),
        "{refused}"
    );
    assert_eq!(
        ask(&live, "web.example.").map(|a| a.len()),
        Ok(2),
        "nothing changed"
    );
    let endpoints: Vec<EndpointInfo> = client.get("/v1/endpoints").await.unwrap();
    assert!(endpoints.iter().all(|e| !e.drained));
}

/// A zone stays where it was named: `zone reload` of a policy-file zone
/// leaves it the policy file's, so an edit of the policy file is served
/// on reload; a zone the control API loaded is the API's until released,
/// and then the policy file's again.
#[tokio::test(flavor = "multi_thread")]
async fn zones_stay_where_they_were_named_until_released() {
    let scratch = Scratch::new("owner");
    // Each version with a higher serial, as the serial rule wants.
    let other = |name: &str, address: &str, serial: &str| {
        scratch.write(
            name,
            &ZONE
                .replace("198.18.1.1", address)
                .replace(" 7 2 3 4 5", &format!(" {serial} 2 3 4 5"))
                .replace("$TTL 60", "$TTL 60\n$ORIGIN other.test."),
        )
    };
    let first = other("first.zone", "198.18.7.1", "1");
    let policy = |file: &std::path::Path| {
        format!(
            "{POLICY}[[zone]]\norigin = \"other.test.\"\nfile = \"{}\"\n",
            file.display()
        )
    };
    let (live, client) = start_with(&scratch, &policy(&first)).await;
    let source = || async {
        let zone: ZoneInfo = client.get("/v1/zones/other.test").await.unwrap();
        zone.source
    };
    let www = || ask(&live, "www.other.test.");
    assert_eq!(www(), Ok(vec!["198.18.7.1".parse().unwrap()]));

    let _: Applied = client
        .post("/v1/zones/other.test/reload", None::<&()>)
        .await
        .unwrap();
    assert_eq!(source().await, ZoneSource::PolicyFile, "still the file's");
    let second = other("second.zone", "198.18.7.2", "2");
    scratch.write("dnslb.toml", &policy(&second));
    let _: Applied = client.post("/v1/reload", None::<&()>).await.unwrap();
    assert_eq!(
        www(),
        Ok(vec!["198.18.7.2".parse().unwrap()]),
        "the edit is served"
    );

    // Loaded through the API: the API's, across reloads, until released.
    let third = other("third.zone", "198.18.7.3", "3");
    let _: Applied = client
        .put("/v1/zones/other.test", &ZoneLoad { file: third })
        .await
        .unwrap();
    let _: Applied = client.post("/v1/reload", None::<&()>).await.unwrap();
    assert_eq!(source().await, ZoneSource::ControlApi);
    assert_eq!(www(), Ok(vec!["198.18.7.3".parse().unwrap()]));
    other("second.zone", "198.18.7.2", "4");
    let _: Applied = client
        .post("/v1/zones/other.test/release", None::<&()>)
        .await
        .unwrap();
    assert_eq!(source().await, ZoneSource::PolicyFile);
    assert_eq!(
        www(),
        Ok(vec!["198.18.7.2".parse().unwrap()]),
        "the file's again"
    );
    let refused = client
        .post::<_, Applied>("/v1/zones/other.test/release", None::<&()>)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "zone other.test. is served as the files name it: the control API has no change of it to release"
    );
}
