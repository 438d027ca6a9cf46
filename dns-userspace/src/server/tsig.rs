//! TSIG (RFC 8945): the shared keys that sign zone transfers and NOTIFY
//! between a primary and its secondaries. The MACs themselves are
//! hickory-proto's; this module decides what is signed with which key and
//! how a server answers a request whose signature does not hold.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    ProtoError,
    op::{Message, ResponseCode},
    rr::{
        Name, TSigResponseContext, TSigVerifier, TSigner,
        rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record},
    },
};

/// How far apart the two ends' clocks may be (RFC 8945 §10 recommends
/// 300 seconds).
const FUDGE: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum TsigKeyError {
    #[error("the key name `{0}` is not a domain name")]
    Name(String),
    #[error("algorithm `{0}` is not one of hmac-sha256, hmac-sha384, hmac-sha512")]
    Algorithm(String),
    #[error("the secret is not base64: {0}")]
    Secret(#[from] base64::DecodeError),
    #[error("the secret is empty")]
    EmptySecret,
}

/// A named shared secret (`[tsig_key.NAME]` in the policy file).
#[derive(Clone)]
pub struct TsigKey {
    signer: TSigner,
}

impl fmt::Debug for TsigKey {
    // The secret stays out of logs and debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TsigKey({} {})", self.name(), self.signer.algorithm())
    }
}

impl TsigKey {
    /// The key `name` with `algorithm` (as Knot and BIND spell it) and the
    /// base64 `secret`.
    pub fn new(name: &str, algorithm: &str, secret: &str) -> Result<Self, TsigKeyError> {
        use base64::Engine;
        let owner = Name::from_ascii(name).map_err(|_| TsigKeyError::Name(name.to_owned()))?;
        let algorithm = match algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            _ => return Err(TsigKeyError::Algorithm(algorithm.to_owned())),
        };
        let secret = base64::engine::general_purpose::STANDARD.decode(secret.trim())?;
        if secret.is_empty() {
            return Err(TsigKeyError::EmptySecret);
        }
        let signer = TSigner::new(secret, algorithm.clone(), owner, FUDGE)
            .map_err(|_| TsigKeyError::Algorithm(algorithm.to_string()))?;
        Ok(TsigKey { signer })
    }

    pub fn name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// Signs `request` (its last change); the verifier checks the answers.
    pub fn sign_request(&self, request: &mut Message) -> Result<TSigVerifier, ProtoError> {
        request
            .finalize(&self.signer, now())?
            .ok_or_else(|| ProtoError::from("signing a request gave no verifier"))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// What a request's signature says, checked against the key a zone wants.
pub enum Signature {
    /// Not signed, and no key is wanted.
    Unsigned,
    /// Signed with the wanted key: the answers are signed with it too.
    Valid(ResponseSigner),
    /// Not signed, but a key is wanted.
    Missing,
    /// Signed, but not as wanted: answer NOTAUTH with this TSIG record
    /// (RFC 8945 §5.2), unsigned but for a bad time.
    Failed(&'static str, Box<TsigAnswer>),
}

/// The TSIG record of an error answer.
pub struct TsigAnswer(TSigResponseContext);

impl TsigAnswer {
    /// `response` encoded with the TSIG record.
    pub fn encode(self, mut response: Message) -> Option<Vec<u8>> {
        let bytes = response.to_vec().ok()?;
        response.set_signature(self.0.sign(&bytes).ok()?);
        response.to_vec().ok()
    }
}

/// Checks the signature of `request` (whose bytes are `bytes`) against
/// `wanted`.
pub fn check(bytes: &[u8], request: &Message, wanted: Option<&TsigKey>) -> Signature {
    let Some(record) = request.signature() else {
        return match wanted {
            Some(_) => Signature::Missing,
            None => Signature::Unsigned,
        };
    };
    let id = request.metadata.id;
    let time = now();
    let Some(key) = wanted.filter(|key| {
        key.name() == &record.name && key.signer.algorithm() == &record.data.algorithm
    }) else {
        let context = TSigResponseContext::unknown_key(id, time, record.name.clone());
        return Signature::Failed("signed with an unknown key", Box::new(TsigAnswer(context)));
    };
    let bad_signature = || {
        let context = TSigResponseContext::bad_signature(id, time, key.signer.clone());
        Signature::Failed("bad signature", Box::new(TsigAnswer(context)))
    };
    let Ok((mac, _, window)) = key.signer.verify_message_byte(bytes, None, true) else {
        return bad_signature();
    };
    if !window.contains(&time) {
        let context =
            TSigResponseContext::new(id, time, key.signer.clone(), mac, Some(TsigError::BadTime));
        return Signature::Failed(
            "signed too far from this clock",
            Box::new(TsigAnswer(context)),
        );
    }
    Signature::Valid(ResponseSigner {
        key: key.clone(),
        previous_mac: mac,
        time,
        first: true,
    })
}

/// A request refused for its signature: why, and the answer to send.
pub struct Refusal {
    pub why: &'static str,
    pub answer: Option<Vec<u8>>,
}

/// The signer of the answers to `request` (none when neither it nor the
/// zone has a key), or its refusal built on `response`: REFUSED when the
/// zone's key is missing, NOTAUTH with the TSIG error when a signature
/// does not hold.
pub fn authorize(
    bytes: &[u8],
    request: &Message,
    wanted: Option<&TsigKey>,
    mut response: Message,
) -> Result<Option<ResponseSigner>, Refusal> {
    match check(bytes, request, wanted) {
        Signature::Unsigned => Ok(None),
        Signature::Valid(signer) => Ok(Some(signer)),
        Signature::Missing => {
            response.metadata.response_code = ResponseCode::Refused;
            Err(Refusal {
                why: "not signed with the zone's TSIG key",
                answer: response.to_vec().ok(),
            })
        }
        Signature::Failed(why, answer) => {
            response.metadata.response_code = ResponseCode::NotAuth;
            Err(Refusal {
                why,
                answer: answer.encode(response),
            })
        }
    }
}

/// `message` encoded, and signed when `signer` is given.
pub fn seal(signer: Option<&mut ResponseSigner>, message: Message) -> Option<Vec<u8>> {
    match signer {
        Some(signer) => signer.sign(message).ok(),
        None => message.to_vec().ok(),
    }
}

/// Signs the messages of one answer in order, each MAC chained to the one
/// before (RFC 8945 §5.3.1): the first covers the request's MAC and the
/// full TSIG variables, each later one the previous MAC and the timers.
pub struct ResponseSigner {
    key: TsigKey,
    previous_mac: Vec<u8>,
    time: u64,
    first: bool,
}

impl ResponseSigner {
    /// `message` encoded with its TSIG record.
    pub fn sign(&mut self, mut message: Message) -> Result<Vec<u8>, ProtoError> {
        let signer = &self.key.signer;
        let unsigned = message.to_vec()?;
        let stub = TSIG::new(
            signer.algorithm().clone(),
            self.time,
            signer.fudge(),
            Vec::new(),
            message.metadata.id,
            None,
            Vec::new(),
        );
        let covered = if self.first {
            signer.encode_response_tbs(&self.previous_mac, &unsigned, &stub)?
        } else {
            let mut covered = Vec::with_capacity(unsigned.len() + self.previous_mac.len() + 10);
            let mac_len = u16::try_from(self.previous_mac.len())
                .map_err(|_| ProtoError::from("a MAC longer than 64 KB"))?;
            covered.extend_from_slice(&mac_len.to_be_bytes());
            covered.extend_from_slice(&self.previous_mac);
            covered.extend_from_slice(&unsigned);
            // Time signed is 48 bits.
            covered.extend_from_slice(&self.time.to_be_bytes()[2..]);
            covered.extend_from_slice(&signer.fudge().to_be_bytes());
            covered
        };
        let mac = signer
            .sign(&covered)
            .map_err(|error| ProtoError::from(error.to_string()))?;
        self.previous_mac.clone_from(&mac);
        self.first = false;
        message.set_signature(Box::new(make_tsig_record(
            self.key.name().clone(),
            stub.set_mac(mac),
        )));
        message.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{OpCode, Query},
        rr::RecordType,
    };

    use super::*;

    const SECRET: &str = "c2VjcmV0IHNoYXJlZCBieSBwcmltYXJ5IGFuZCBzZWNvbmRhcnk=";

    fn key(secret: &str) -> TsigKey {
        TsigKey::new("transfer.", "hmac-sha256", secret).unwrap()
    }

    fn signed_request(with: &TsigKey) -> (Vec<u8>, Message, TSigVerifier) {
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::AXFR,
        ));
        let verifier = with.sign_request(&mut request).unwrap();
        let bytes = request.to_vec().unwrap();
        (bytes.clone(), Message::from_vec(&bytes).unwrap(), verifier)
    }

    #[test]
    fn a_chain_of_signed_answers_verifies_as_a_client_checks_it() {
        let key = key(SECRET);
        let (bytes, request, mut verifier) = signed_request(&key);
        let Signature::Valid(mut signer) = check(&bytes, &request, Some(&key)) else {
            panic!("a valid signature");
        };
        for _ in 0..3 {
            let mut answer = Message::response(request.metadata.id, OpCode::Query);
            answer.add_queries(request.queries.clone());
            let signed = signer.sign(answer).unwrap();
            verifier.verify(&signed).expect("each message verifies");
        }
    }

    #[test]
    fn a_wrong_secret_a_missing_or_unexpected_signature_are_told_apart() {
        let (bytes, request, _) = signed_request(&key("d3Jvbmc="));
        assert!(matches!(
            check(&bytes, &request, Some(&key(SECRET))),
            Signature::Failed("bad signature", _)
        ));
        assert!(matches!(
            check(&bytes, &request, None),
            Signature::Failed("signed with an unknown key", _)
        ));
        let mut plain = Message::query();
        plain.add_query(Query::query(Name::root(), RecordType::AXFR));
        let plain_bytes = plain.to_vec().unwrap();
        assert!(matches!(
            check(&plain_bytes, &plain, Some(&key(SECRET))),
            Signature::Missing
        ));
        assert!(matches!(
            check(&plain_bytes, &plain, None),
            Signature::Unsigned
        ));
    }

    #[test]
    fn keys_are_checked_when_read() {
        assert!(matches!(
            TsigKey::new("k.", "hmac-md5", SECRET),
            Err(TsigKeyError::Algorithm(_))
        ));
        assert!(matches!(
            TsigKey::new("k.", "hmac-sha256", "not base64!"),
            Err(TsigKeyError::Secret(_))
        ));
        assert!(format!("{:?}", key(SECRET)).contains("transfer."));
        assert!(!format!("{:?}", key(SECRET)).contains(SECRET));
    }
}
