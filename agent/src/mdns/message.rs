//! The DNS messages of a one-shot Multicast DNS query: the query we send and
//! the legacy unicast response we read back. Pure: bytes in, values out; a
//! packet we cannot read is `None`, never a panic (anyone on the link can
//! send us one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Resource record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Resource record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

const HEADER_LEN: usize = 12;
const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const RCODE_MASK: u16 = 0x000f;
/// RFC 6762 §10.2: the top bit of a record's class is "cache flush" in
/// multicast responses; a legacy unicast response should not set it, but
/// responders that do still mean class IN.
const CACHE_FLUSH: u16 = 0x8000;
/// RFC 1035 §2.3.4.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
/// More pointers than any sane name needs; a crafted packet that chains
/// pointers in a circle stops here.
const MAX_POINTERS: usize = 32;

/// Why a host name cannot go into a DNS query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A dot-separated part is empty or longer than a DNS label may be.
    #[error(
        "`{name}` is not a valid host name: every dot-separated part must be 1 to {MAX_LABEL_LEN} bytes"
    )]
    BadLabel {
        /// The name asked for.
        name: String,
    },
    /// The whole name is longer than DNS carries.
    #[error("`{name}` is not a valid host name: longer than {MAX_NAME_LEN} bytes")]
    TooLong {
        /// The name asked for.
        name: String,
    },
}

/// The wire form of `name` (dot-separated, no trailing dot), or why it has
/// none.
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), NameError> {
    let start = out.len();
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(NameError::BadLabel {
                name: name.to_owned(),
            });
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A standard query with id `id` and two questions, A and AAAA of `name`
/// (no trailing dot), class IN, the unicast-response bit clear. Flags are
/// all zero: RFC 6762 §18 wants RD clear in multicast queries.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, NameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2 * (name.len() + 6));
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // flags
    out.extend_from_slice(&2u16.to_be_bytes()); // questions
    out.extend_from_slice(&[0; 6]); // answers, authority, additional
    // The name is written out in full twice rather than compressed: small
    // responders are not all trusted to follow pointers in a query.
    for qtype in [TYPE_A, TYPE_AAAA] {
        encode_name(name, &mut out)?;
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
    }
    Ok(out)
}

/// Reads a name starting at `pos`, following compression pointers. Returns
/// the name's labels joined by dots, and the position just after the name
/// where it started (not where a pointer led).
pub fn read_name(packet: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut name: Vec<u8> = Vec::new();
    let mut end = None;
    let mut pointers = 0;
    loop {
        let len = *packet.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let end = end.unwrap_or(pos + 1);
                return Some((name, end));
            }
            0x00 => {
                let label = packet.get(pos + 1..pos + 1 + len as usize)?;
                if !name.is_empty() {
                    name.push(b'.');
                }
                name.extend_from_slice(label);
                if name.len() > MAX_NAME_LEN {
                    return None;
                }
                pos += 1 + len as usize;
            }
            0xc0 => {
                let low = *packet.get(pos + 1)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                pointers += 1;
                // RFC 1035 §4.1.4: a pointer names a prior occurrence.
                if target >= pos || pointers > MAX_POINTERS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            // 0x40 and 0x80: extended label types nobody uses for a host.
            _ => return None,
        }
    }
}

/// Reads a big-endian u16 at `pos`.
fn u16_at(packet: &[u8], pos: usize) -> Option<u16> {
    let b = packet.get(pos..pos + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The addresses a response gives for `name` (no trailing dot; compared
/// ASCII case-insensitively, as DNS names are):
/// A and AAAA records of class IN in its answer and additional sections, in
/// packet order. `None` when the packet is not the response to query `id`
/// or cannot be read; `Some` of an empty list when it answers but not for
/// this name.
pub fn parse_response(packet: &[u8], id: u16, name: &str) -> Option<Vec<IpAddr>> {
    if u16_at(packet, 0)? != id {
        return None;
    }
    let flags = u16_at(packet, 2)?;
    if flags & FLAG_QR == 0 || flags & OPCODE_MASK != 0 || flags & RCODE_MASK != 0 {
        return None;
    }
    let questions = u16_at(packet, 4)?;
    let answers = u16_at(packet, 6)?;
    let authority = u16_at(packet, 8)?;
    let additional = u16_at(packet, 10)?;
    let mut pos = HEADER_LEN;
    for _ in 0..questions {
        let (_, after) = read_name(packet, pos)?;
        pos = after + 4;
    }
    let mut found = Vec::new();
    for section in [answers, authority, additional]
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| std::iter::repeat_n(i, usize::from(n)))
    {
        let (owner, after) = read_name(packet, pos)?;
        let rtype = u16_at(packet, after)?;
        let class = u16_at(packet, after + 2)?;
        let rdlen = usize::from(u16_at(packet, after + 8)?);
        let rdata = packet.get(after + 10..after + 10 + rdlen)?;
        pos = after + 10 + rdlen;
        // Authority records are read only to get past them.
        if section == 1
            || class & !CACHE_FLUSH != CLASS_IN
            || !owner.eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        match (rtype, rdata.len()) {
            (TYPE_A, 4) => found.push(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(rdata);
                found.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            (TYPE_A | TYPE_AAAA, _) => return None,
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u16 = 0xbeef;

    fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            p.extend_from_slice(&c.to_be_bytes());
        }
        p
    }

    fn record(p: &mut Vec<u8>, name: &[u8], rtype: u16, class: u16, rdata: &[u8]) {
        p.extend_from_slice(name);
        p.extend_from_slice(&rtype.to_be_bytes());
        p.extend_from_slice(&class.to_be_bytes());
        p.extend_from_slice(&10u32.to_be_bytes());
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(rdata);
    }

    /// What avahi sends back, give or take: both questions repeated (the
    /// second by a pointer to the first), the A record in the answers with
    /// the cache-flush bit set, the AAAA in the additional section under a
    /// name that is half label, half pointer, a TXT record to skip, and
    /// the name in the case the responder likes.
    fn response() -> Vec<u8> {
        let mut p = header(ID, 0x8400, [2, 2, 0, 2]);
        assert_eq!(p.len(), 12);
        p.extend_from_slice(b"\x0aK3S-Server\x05LOCAL\x00");
        p.extend_from_slice(&TYPE_A.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p.extend_from_slice(b"\xc0\x0c");
        p.extend_from_slice(&TYPE_AAAA.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        record(&mut p, b"\xc0\x0c", 16, CLASS_IN, b"\x04txt!");
        record(
            &mut p,
            b"\xc0\x0c",
            TYPE_A,
            CLASS_IN | 0x8000,
            &[192, 168, 1, 20],
        );
        // "k3s-server" spelled again, then a pointer to "LOCAL" at offset 23.
        let aaaa: Ipv6Addr = "fd00::20".parse().unwrap();
        record(
            &mut p,
            b"\x0ak3s-server\xc0\x17",
            TYPE_AAAA,
            CLASS_IN,
            &aaaa.octets(),
        );
        // Class CHAOS: not an address of ours whatever its type.
        record(&mut p, b"\xc0\x0c", TYPE_A, 3, &[10, 9, 9, 9]);
        p
    }

    #[test]
    fn query_asks_a_and_aaaa_of_the_name() {
        let q = encode_query(0x1234, "host.local").unwrap();
        let name = b"\x04host\x05local\x00";
        let mut want = vec![0x12, 0x34, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(name);
        want.extend_from_slice(&[0, 1, 0, 1]);
        want.extend_from_slice(name);
        want.extend_from_slice(&[0, 28, 0, 1]);
        assert_eq!(q, want);
    }

    #[test]
    fn query_refuses_names_dns_cannot_carry() {
        assert!(
            encode_query(1, "a..local")
                .unwrap_err()
                .to_string()
                .contains("`a..local`")
        );
        let long_label = format!("{}.local", "x".repeat(64));
        assert!(encode_query(1, &long_label).is_err());
        let long_name = format!("{}local", "abcdefghi.".repeat(26));
        assert!(
            encode_query(1, &long_name)
                .unwrap_err()
                .to_string()
                .contains("255")
        );
        assert!(encode_query(1, &format!("{}.local", "x".repeat(63))).is_ok());
    }

    #[test]
    fn response_gives_answers_and_additionals_whatever_the_case() {
        let ips = parse_response(&response(), ID, "k3s-server.local").unwrap();
        let want: Vec<IpAddr> = vec!["192.168.1.20".parse().unwrap(), "fd00::20".parse().unwrap()];
        assert_eq!(ips, want);
        assert_eq!(
            parse_response(&response(), ID, "K3S-SERVER.Local").unwrap(),
            want
        );
    }

    #[test]
    fn response_for_another_name_gives_nothing() {
        assert_eq!(
            parse_response(&response(), ID, "other.local"),
            Some(Vec::new())
        );
        // A prefix or suffix of the name is another name.
        assert_eq!(
            parse_response(&response(), ID, "server.local"),
            Some(Vec::new())
        );
        assert_eq!(
            parse_response(&response(), ID, "k3s-server"),
            Some(Vec::new())
        );
    }

    #[test]
    fn responses_to_other_queries_are_not_ours() {
        assert_eq!(
            parse_response(&response(), ID ^ 1, "k3s-server.local"),
            None
        );
        // Someone else's query (QR clear) with our id.
        let mut query = response();
        query[2] &= 0x7f;
        assert_eq!(parse_response(&query, ID, "k3s-server.local"), None);
        // An error response.
        let mut refused = response();
        refused[3] |= 5;
        assert_eq!(parse_response(&refused, ID, "k3s-server.local"), None);
    }

    #[test]
    fn every_truncation_is_ignored() {
        let full = response();
        for len in 0..full.len() {
            assert_eq!(
                parse_response(&full[..len], ID, "k3s-server.local"),
                None,
                "cut at {len}"
            );
        }
    }

    #[test]
    fn pointer_loops_end() {
        // A pointer to itself.
        let mut p = header(ID, 0x8400, [0, 1, 0, 0]);
        record(&mut p, b"\xc0\x0c", TYPE_A, CLASS_IN, &[1, 2, 3, 4]);
        assert_eq!(parse_response(&p, ID, "x.local"), None);
        // A label, then a pointer back to the label: "a.a.a..." forever.
        let mut p = header(ID, 0x8400, [0, 1, 0, 0]);
        record(&mut p, b"\x01a\xc0\x0c", TYPE_A, CLASS_IN, &[1, 2, 3, 4]);
        assert_eq!(parse_response(&p, ID, "a.local"), None);
        // Two pointers to each other: the forward one is refused.
        let mut p = header(ID, 0x8400, [0, 1, 0, 0]);
        record(&mut p, b"\xc0\x0e\xc0\x0c", TYPE_A, CLASS_IN, &[1, 2, 3, 4]);
        assert_eq!(parse_response(&p, ID, "a.local"), None);
        assert_eq!(read_name(b"\xc0\x00", 0), None);
    }

    #[test]
    fn a_record_of_the_wrong_size_spoils_the_packet() {
        let mut p = header(ID, 0x8400, [0, 1, 0, 0]);
        record(
            &mut p,
            b"\x01x\x05local\x00",
            TYPE_A,
            CLASS_IN,
            &[1, 2, 3, 4, 5],
        );
        assert_eq!(parse_response(&p, ID, "x.local"), None);
    }

    #[test]
    fn names_read_through_pointers_end_where_they_started() {
        let p = response();
        let (name, end) = read_name(&p, 12).unwrap();
        assert_eq!(name, b"K3S-Server.LOCAL");
        assert_eq!(end, 12 + 18);
        let (name, end) = read_name(&p, end + 4).unwrap();
        assert_eq!(name, b"K3S-Server.LOCAL");
        assert_eq!(end, 12 + 18 + 4 + 2);
    }
}
