//! NOTIFY out (RFC 1996): a zone's secondaries are told of each new
//! version over UDP, each tried up to [`TRIES`] times a second apart until
//! it answers, so that they fetch it at once rather than at their next
//! SOA refresh. A zone with a TSIG key signs its NOTIFY with it.

use std::{net::SocketAddr, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use prometheus::IntCounterVec;
use tokio::net::UdpSocket;

use super::{
    transfer::{TransferRules, ZoneTransfer},
    tsig::TsigKey,
};
use crate::zone::Catalog;

/// Sends per secondary before giving up.
const TRIES: u32 = 5;
/// How long each send waits for the secondary's answer.
const WAIT: Duration = Duration::from_secs(1);

/// Tells the secondaries of each zone of `new` whose serial is not the one
/// it had in `old` (or that is new). Returns at once; the sends run on the
/// runtime.
pub fn notify_changes(
    old: &Catalog,
    new: &Catalog,
    rules: &TransferRules,
    counts: Option<IntCounterVec>,
) {
    for zone in new.zones() {
        // A zone dnslb signs is announced as each signed copy is made.
        let Some(rule) = rules.get(zone.origin()).filter(|_| !zone.is_online()) else {
            continue;
        };
        if old
            .get(zone.origin())
            .is_some_and(|before| before.serial() == zone.serial())
        {
            continue;
        }
        notify_version(zone.origin_name(), zone.serial(), rule, counts.clone());
    }
}

/// Tells the secondaries of `origin` (by `rule`) of its version `serial`.
/// Returns at once; the sends run on the runtime.
pub fn notify_version(
    origin: &Name,
    serial: u32,
    rule: &ZoneTransfer,
    counts: Option<IntCounterVec>,
) {
    if rule.notify.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime to send NOTIFY of {origin} from");
        return;
    };
    for &target in &rule.notify {
        let (origin, key, counts) = (origin.clone(), rule.key.clone(), counts.clone());
        runtime.spawn(async move {
            let result = notify(origin, serial, target, key).await;
            if let Some(counts) = counts {
                counts.with_label_values(&["notify", "out", result]).inc();
            }
        });
    }
}

/// The NOTIFY message for `origin`.
fn message(origin: &Name) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Notify;
    message.metadata.authoritative = true;
    message.add_query(Query::query(origin.clone(), RecordType::SOA));
    message
}

/// Sends the NOTIFY and logs what came of it: `acknowledged`, `refused`,
/// `unanswered` or `failed`, as returned.
async fn notify(
    origin: Name,
    serial: u32,
    target: SocketAddr,
    key: Option<TsigKey>,
) -> &'static str {
    let (result, what) = match send(&origin, target, key.as_ref()).await {
        Ok(Some(ResponseCode::NoError)) => ("acknowledged", "acknowledged".to_owned()),
        Ok(Some(code)) => ("refused", format!("answered {code}")),
        Ok(None) => ("unanswered", format!("no answer to {TRIES} tries")),
        Err(error) => ("failed", error.to_string()),
    };
    let message = format!("NOTIFY of {origin} serial {serial} to {target}: {what}");
    if result == "acknowledged" {
        tracing::info!(event = "notify", zone = %origin, target = %target, result, "{message}");
    } else {
        tracing::warn!(event = "notify", zone = %origin, target = %target, result, "{message}");
    }
    result
}

/// Sends the NOTIFY until `target` answers it; its response code, or
/// `None` after [`TRIES`] sends without one.
async fn send(
    origin: &Name,
    target: SocketAddr,
    key: Option<&TsigKey>,
) -> std::io::Result<Option<ResponseCode>> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    let mut request = message(origin);
    if let Some(key) = key {
        // The answer's signature is not checked: it only stops the resends.
        key.sign_request(&mut request)
            .map_err(std::io::Error::other)?;
    }
    let bytes = request.to_vec().map_err(std::io::Error::other)?;
    let mut buffer = vec![0u8; 4096];
    for _ in 0..TRIES {
        socket.send(&bytes).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        // Anything but the answer to this NOTIFY is ignored.
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            let Ok(answer) = Message::from_vec(&buffer[..received?]) else {
                continue;
            };
            if answer.metadata.id == request.metadata.id
                && answer.metadata.message_type == MessageType::Response
            {
                return Ok(Some(answer.metadata.response_code));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secondary that drops the first `drop` NOTIFYs and answers the next.
    async fn secondary(drop: usize) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut seen = 0;
            loop {
                let (len, from) = socket.recv_from(&mut buffer).await.unwrap();
                let notify = Message::from_vec(&buffer[..len]).unwrap();
                assert_eq!(notify.metadata.op_code, OpCode::Notify);
                assert!(notify.metadata.authoritative);
                assert_eq!(notify.queries[0].query_type(), RecordType::SOA);
                seen += 1;
                if seen > drop {
                    let answer = Message::response(notify.metadata.id, OpCode::Notify);
                    socket
                        .send_to(&answer.to_vec().unwrap(), from)
                        .await
                        .unwrap();
                    return seen;
                }
            }
        });
        (addr, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_notify_is_sent_again_until_the_secondary_answers() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let (addr, secondary) = secondary(2).await;
        let answer = send(&origin, addr, None).await.unwrap();
        assert_eq!(answer, Some(ResponseCode::NoError));
        assert_eq!(secondary.await.unwrap(), 3, "two lost, the third answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_secondary_is_given_up_after_five_tries() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let (addr, secondary) = secondary(usize::MAX).await;
        assert_eq!(send(&origin, addr, None).await.unwrap(), None);
        secondary.abort();
    }
}
