use std::{net::Ipv4Addr, path::Path};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{
        Name,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
};

use hickory_proto::rr::RecordType;

use super::*;
use crate::{
    config::parse_config,
    server::{Responder, Transport},
    zone::parse_zone,
};

const POLICY: &str = r#"
[pool.v4]
endpoints = ["198.18.10.1", "198.18.10.2"]
[pool.v6]
endpoints = ["2001:db8::1"]
[pool.lan]
endpoints = ["198.18.20.1"]
[pool.down]
check = "closed"
endpoints = ["127.0.0.1"]
[check.closed]
kind = "tcp"
port = 1
interval = "50ms"
timeout = "50ms"

[service.www]
name = "www.example.com."
policy = { kind = "multivalue", pool = "v4" }
[service.www6]
name = "www.example.com."
type = "AAAA"
ttl = 120
policy = { pool = "v6" }
[service.near]
name = "near.example.com."
[service.near.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["198.18.0.0/16"], pool = "lan" },
  { default = true, pool = "v4" },
]
[service.closed]
name = "closed.example.com."
fail_closed = true
policy = { pool = "down" }
"#;

fn responder() -> Arc<Responder> {
    let zone = parse_zone(
        &Name::from_ascii("example.com.").unwrap(),
        "$TTL 300\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.53\nwww TXT \"zone text\"\n\
         alias CNAME near\n",
        Path::new("example.com.zone"),
    )
    .unwrap();
    let mut catalog = Catalog::default();
    catalog.insert(zone);
    Arc::new(Responder::new(catalog, 1232))
}

fn ask(
    responder: &Responder,
    name: &str,
    record_type: RecordType,
    client: &str,
    subnet: Option<ClientSubnet>,
) -> Message {
    let mut query = Message::query();
    query.metadata.id = 7;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    if let Some(subnet) = subnet {
        let mut edns = Edns::new();
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        query.edns = Some(edns);
    }
    let bytes = query.to_vec().unwrap();
    let answer = responder
        .respond(&bytes, client.parse().unwrap(), Transport::Udp)
        .expect("an answer");
    Message::from_vec(&answer).unwrap()
}

fn addrs(message: &Message) -> Vec<String> {
    message.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn services_answer_in_userspace_beside_the_zone() {
    let config = parse_config(Path::new("dnslb.toml"), POLICY, None).unwrap();
    let responder = responder();
    let _steering = Steering::start(
        config,
        responder.clone(),
        None,
        crate::hooks::Hooks::none(),
        Overrides::default(),
    )
    .unwrap();

    let www = ask(
        &responder,
        "www.example.com.",
        RecordType::A,
        "192.0.2.1",
        None,
    );
    assert_eq!(www.answers.len(), 2);
    assert!(www.metadata.authoritative);
    let again = ask(
        &responder,
        "www.example.com.",
        RecordType::A,
        "192.0.2.1",
        None,
    );
    assert_ne!(addrs(&www), addrs(&again), "rotated");

    let v6 = ask(
        &responder,
        "www.example.com.",
        RecordType::AAAA,
        "192.0.2.1",
        None,
    );
    assert_eq!(addrs(&v6), ["2001:db8::1"]);
    assert_eq!(v6.answers[0].ttl, 120);
    // Other types at a service's name come from the zone; a name that
    // exists only as a service has NODATA, not NXDOMAIN, for them.
    let txt = ask(
        &responder,
        "www.example.com.",
        RecordType::TXT,
        "192.0.2.1",
        None,
    );
    assert_eq!(txt.answers.len(), 1);
    let mx = ask(
        &responder,
        "near.example.com.",
        RecordType::MX,
        "192.0.2.1",
        None,
    );
    assert_eq!(
        (mx.metadata.response_code, mx.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(mx.authorities.len(), 1, "with the SOA");

    // The client's address decides, or its Client Subnet, whose scope
    // comes back with the prefix that decided.
    let lan = ask(
        &responder,
        "near.example.com.",
        RecordType::A,
        "198.18.7.7",
        None,
    );
    assert_eq!(addrs(&lan), ["198.18.20.1"]);
    let subnet = ClientSubnet::new(Ipv4Addr::new(198, 18, 9, 0).into(), 24, 0);
    let by_ecs = ask(
        &responder,
        "near.example.com.",
        RecordType::A,
        "192.0.2.1",
        Some(subnet),
    );
    assert_eq!(addrs(&by_ecs), ["198.18.20.1"]);
    let echoed = by_ecs
        .edns
        .as_ref()
        .and_then(|e| match e.options().get(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        });
    assert_eq!(echoed, Some(16));

    // An alias whose target is a service: the CNAME, then the service's
    // answer for this client, with its scope.
    let alias = ask(
        &responder,
        "alias.example.com.",
        RecordType::A,
        "192.0.2.1",
        Some(subnet),
    );
    let records: Vec<String> = alias.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(records, ["near.example.com.", "198.18.20.1"]);
    let alias6 = ask(
        &responder,
        "alias.example.com.",
        RecordType::AAAA,
        "192.0.2.1",
        None,
    );
    assert_eq!(
        alias6.metadata.response_code,
        ResponseCode::NoError,
        "the target exists"
    );
    assert_eq!((alias6.answers.len(), alias6.authorities.len()), (1, 1));

    // Fail closed: once the only endpoint is down, no records.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let closed = ask(
            &responder,
            "closed.example.com.",
            RecordType::A,
            "192.0.2.1",
            None,
        );
        if closed.answers.is_empty() {
            assert_eq!(closed.metadata.response_code, ResponseCode::NoError);
            assert_eq!(closed.authorities.len(), 1, "with the SOA");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never marked down");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
