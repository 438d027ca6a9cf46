//! The daemon's fuzz targets: what no input may make the daemon do. Run
//! by cargo-fuzz (`fuzz/`, `cargo xtask fuzz`) and, for every input kept
//! in `fuzz/regressions/`, by the tests. A target panics on a violation.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use dnslb::{
    config::parse_config,
    metrics::Metrics,
    server::{Responder, Transport, answer_stream},
    zone::parse_zone,
};
use hickory_proto::{op::Message, rr::Name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    oracle::{TEST_ZONES, catalog},
    testrun::EDNS_PAYLOAD,
};

/// The responder over the test zones, made once.
fn responder() -> &'static Responder {
    static RESPONDER: OnceLock<Responder> = OnceLock::new();
    RESPONDER.get_or_init(|| Responder::new(catalog(&TEST_ZONES), EDNS_PAYLOAD))
}

/// Any bytes, as a query over UDP and over TCP: the daemon answers with a
/// message that decodes and carries the query's ID, within the UDP size it
/// advertises, or not at all; it never panics.
pub fn respond(data: &[u8]) {
    let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(answer) = responder().respond(data, client, transport) else {
            continue;
        };
        let message = Message::from_vec(&answer).unwrap_or_else(|error| {
            panic!("an answer that does not decode ({error}): {answer:02x?}")
        });
        assert_eq!(
            Some(&message.metadata.id.to_be_bytes()[..]),
            data.get(..2),
            "the answer carries the query's ID"
        );
        if transport == Transport::Udp {
            assert!(
                answer.len() <= usize::from(EDNS_PAYLOAD),
                "a UDP answer of {} bytes",
                answer.len()
            );
        }
    }
}

/// Any bytes as a DNS over TCP stream, through the server's connection
/// handler: what comes back is a run of length-prefixed messages that
/// decode, at most one a complete message sent; never a panic.
pub fn tcp(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    let metrics = METRICS.get_or_init(Metrics::new);
    let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let sent = framed_messages(data);
    let answers = runtime.block_on(async {
        let (mut ours, theirs) = tokio::io::duplex(1 << 20);
        ours.write_all(data).await.expect("written to memory");
        ours.shutdown().await.expect("shut down");
        // A message cut short ends the connection with an error, as it
        // should: what matters is what was sent back before.
        let _ = answer_stream(theirs, client, responder(), metrics).await;
        let mut answers = Vec::new();
        ours.read_to_end(&mut answers)
            .await
            .expect("read from memory");
        answers
    });
    let mut rest = &answers[..];
    let mut count = 0;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let message = tail.get(..len).expect("a whole answer after its length");
        Message::from_vec(message).expect("an answer that decodes");
        rest = &tail[len..];
        count += 1;
    }
    assert!(rest.is_empty(), "a stray byte after the answers");
    assert!(count <= sent, "{count} answers to {sent} messages");
}

/// Complete length-prefixed messages at the start of `data`.
fn framed_messages(mut data: &[u8]) -> usize {
    let mut count = 0;
    while let [high, low, tail @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let Some(rest) = tail.get(len..) else {
            break;
        };
        data = rest;
        count += 1;
    }
    count
}

/// Any text as a zone file: loaded, or refused with an error; never a
/// panic.
pub fn zone(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Name::from_ascii("fuzz.test.").expect("a valid origin");
    let _ = parse_zone(&origin, text, Path::new("fuzz.zone"));
}

/// Any text as a policy file: loaded, or refused with an error naming
/// the file; never a panic. Files it names are looked for where none are.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = PathBuf::from("/nonexistent/dnslb-fuzz/dnslb.toml");
    if let Err(error) = parse_config(&path, text, None) {
        assert!(
            error.to_string().contains("dnslb.toml"),
            "the error names the file: {error}"
        );
    }
}
