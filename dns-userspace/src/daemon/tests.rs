//! The control path without the kernel: a real `Live` (no XDP) behind the
//! real router on a unix socket, driven by the CLI's client. Needs no root.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use clap::Parser;
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RecordType},
};

use super::{Live, LiveParts, cookies::Cookies, load_at_start};
use crate::{
    api::{
        self,
        client::{Client, ClientError, Target},
        types::{Applied, EndpointInfo, EndpointRef, Status, ZoneInfo, ZoneLoad},
    },
    backends::Backends,
    cli::{Cli, Command},
    hooks::Hooks,
    metrics::Metrics,
    server::{Responder, Transport},
    shared::Shared,
    steering::Steering,
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
    let zone = scratch.write("example.zone", ZONE);
    let policy = scratch.write("dnslb.toml", POLICY);
    let socket = scratch.0.join("control.sock");
    let cli = Cli::try_parse_from([
        "dnslb".as_ref(),
        "run".as_ref(),
        "--no-xdp".as_ref(),
        std::ffi::OsStr::new("--zone"),
        format!("example.={}", zone.display()).as_ref(),
        "--config".as_ref(),
        policy.as_os_str(),
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
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new());
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
