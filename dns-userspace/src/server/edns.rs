//! The EDNS options of a query as the kernel reads them: the OPT record
//! right after the one question, its DO bit, its cookie and Client Subnet,
//! each checked by the rules in `dns_common::wire`. A query whose cookie or
//! Client Subnet is malformed or repeated gets FORMERR (RFC 7873 §5.2.2,
//! RFC 7871 §7.1.1); the kernel passes those on for this.

use dns_common::wire::{
    CLIENT_COOKIE_LEN, FLAGS0_OPCODE_RD, FLAGS0_QR, FLAGS1_CD, HEADER_LEN, OPT_DO, OPT_FLAGS_AT,
    OPT_LEN, OPTION_COOKIE, OPTION_ECS, RCODE_FORMERR, TYPE_OPT, cookie_len_is_valid, ecs_is_valid,
};

use crate::zone::wire;

/// The cookie a query carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub client: [u8; CLIENT_COOKIE_LEN],
    /// The server cookie, empty when the client has none yet.
    pub server: Vec<u8>,
}

/// What the daemon needs from a query's OPT record beyond what hickory
/// decodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    pub cookie: Option<Cookie>,
}

/// A cookie or Client Subnet option that breaks the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed or repeated cookie or Client Subnet option")]
pub struct Malformed;

/// Reads the options of a query laid out as resolvers send them: one
/// question, then at most an OPT record. Other layouts (or a message that
/// is cut short) give no options here; the general decoder judges them.
pub fn read(request: &[u8]) -> Result<QueryOptions, Malformed> {
    let Some(options) = options_area(request) else {
        return Ok(QueryOptions::default());
    };
    let mut found = QueryOptions::default();
    let mut subnet_seen = false;
    let mut rest = options;
    while let [c0, c1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some(data) = tail.get(..len) else {
            return Err(Malformed);
        };
        match u16::from_be_bytes([*c0, *c1]) {
            OPTION_COOKIE => {
                if found.cookie.is_some() || !cookie_len_is_valid(len) {
                    return Err(Malformed);
                }
                let (client, server) = data.split_at(CLIENT_COOKIE_LEN);
                found.cookie = Some(Cookie {
                    client: client.try_into().map_err(|_| Malformed)?,
                    server: server.to_vec(),
                });
            }
            OPTION_ECS => {
                if subnet_seen || !ecs_is_valid(data) {
                    return Err(Malformed);
                }
                subnet_seen = true;
            }
            _ => {}
        }
        rest = &tail[len..];
    }
    if rest.is_empty() {
        Ok(found)
    } else {
        Err(Malformed)
    }
}

/// The options of the OPT record after the single question, if the query
/// is laid out that way.
fn options_area(request: &[u8]) -> Option<&[u8]> {
    let header = request.get(..HEADER_LEN)?;
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) != 1 {
        return None;
    }
    let mut name = [0u8; 255];
    let name_len = wire::read_lowercase(&request[HEADER_LEN..], &mut name)?;
    let opt_at = HEADER_LEN + name_len + 4;
    let opt = request.get(opt_at..opt_at + OPT_LEN)?;
    if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
    request.get(opt_at + OPT_LEN..opt_at + OPT_LEN + len)
}

/// FORMERR for `request`: its ID, opcode, RD and CD, the question as it
/// came, and an OPT record with our payload size and the query's DO bit.
/// `None` when the question cannot be found.
pub fn formerr(request: &[u8], edns_payload: u16) -> Option<Vec<u8>> {
    let mut name = [0u8; 255];
    let name_len = wire::read_lowercase(request.get(HEADER_LEN..)?, &mut name)?;
    let question_end = HEADER_LEN + name_len + 4;
    let question = request.get(HEADER_LEN..question_end)?;
    let dnssec_ok = request
        .get(question_end + OPT_FLAGS_AT)
        .is_some_and(|flags| flags & OPT_DO != 0);
    let mut answer = Vec::with_capacity(question_end + OPT_LEN);
    answer.extend_from_slice(&request[..2]);
    // QR, the opcode and RD as asked; CD as asked; FORMERR.
    answer.push(FLAGS0_QR | (request[2] & FLAGS0_OPCODE_RD));
    answer.push((request[3] & FLAGS1_CD) | RCODE_FORMERR);
    answer.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    answer.extend_from_slice(question);
    let [p0, p1] = edns_payload.to_be_bytes();
    let [t0, t1] = TYPE_OPT.to_be_bytes();
    let flags = if dnssec_ok { OPT_DO } else { 0 };
    answer.extend_from_slice(&[0, t0, t1, p0, p1, 0, 0, flags, 0, 0, 0]);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for www.example. with an OPT record carrying `options`.
    fn query(options: &[u8]) -> Vec<u8> {
        let mut request = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        request.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        request.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0x80, 0]);
        request.extend_from_slice(&(options.len() as u16).to_be_bytes());
        request.extend_from_slice(options);
        request
    }

    #[test]
    fn cookies_are_read_and_checked() {
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let only_client = read(&query(&[&[0, 10, 0, 8][..], &client].concat())).unwrap();
        assert_eq!(
            only_client.cookie,
            Some(Cookie {
                client,
                server: vec![]
            })
        );
        let with_server = [&[0, 10, 0, 24][..], &client, &[9; 16]].concat();
        assert_eq!(
            read(&query(&with_server)).unwrap().cookie.unwrap().server,
            [9; 16]
        );
        for bad_len in [0u8, 7, 9, 15, 41] {
            let option = [&[0, 10, 0, bad_len][..], &vec![1; usize::from(bad_len)]].concat();
            assert_eq!(read(&query(&option)), Err(Malformed), "length {bad_len}");
        }
        let twice = [&only_client_option(client)[..], &only_client_option(client)].concat();
        assert_eq!(read(&query(&twice)), Err(Malformed));
    }

    fn only_client_option(client: [u8; 8]) -> Vec<u8> {
        [&[0, 10, 0, 8][..], &client].concat()
    }

    #[test]
    fn subnets_are_checked_and_the_rest_skipped() {
        let subnet = [0, 8, 0, 7, 0, 1, 24, 0, 198, 18, 0];
        let padding = [0, 12, 0, 3, 0, 0, 0];
        assert!(read(&query(&[&padding[..], &subnet].concat())).is_ok());
        let scope = [0, 8, 0, 7, 0, 1, 24, 16, 198, 18, 0];
        assert_eq!(read(&query(&scope)), Err(Malformed));
        assert_eq!(
            read(&query(&[&subnet[..], &subnet].concat())),
            Err(Malformed)
        );
        assert_eq!(read(&query(&subnet[..9])), Err(Malformed), "cut");
    }

    #[test]
    fn formerr_echoes_the_question() {
        let request = query(&[0, 10, 0, 3, 1, 2, 3]);
        let answer = formerr(&request, 1232).unwrap();
        assert_eq!(&answer[..2], &[0x12, 0x34]);
        assert_eq!((answer[2], answer[3] & 0x0f), (0x81, 1));
        assert_eq!(&answer[12..29], &request[12..29]);
        assert_eq!(answer[29..].len(), OPT_LEN);
        assert_eq!(answer[29 + OPT_FLAGS_AT], OPT_DO, "DO copied");
    }
}
