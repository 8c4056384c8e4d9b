//! The resolver against a responder on a real UDP socket on 127.0.0.1, which
//! reads the query the resolver sent and answers as avahi-daemon does to a
//! legacy unicast query.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::message::{CLASS_IN, TYPE_A, TYPE_AAAA, read_name};
use super::*;

/// A query as the responder received it.
#[derive(Debug)]
struct Seen {
    from: SocketAddr,
    id: u16,
    flags: u16,
    counts: [u16; 4],
    /// Name, type, class of each question.
    questions: Vec<(String, u16, u16)>,
    /// The question section as sent, echoed in the answer.
    question_bytes: Vec<u8>,
}

fn u16_at(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn read_query(p: &[u8], from: SocketAddr) -> Seen {
    let counts = [u16_at(p, 4), u16_at(p, 6), u16_at(p, 8), u16_at(p, 10)];
    let mut pos = 12;
    let mut questions = Vec::new();
    for _ in 0..counts[0] {
        let (name, after) = read_name(p, pos).expect("question name");
        questions.push((
            String::from_utf8(name).expect("utf-8 name"),
            u16_at(p, after),
            u16_at(p, after + 2),
        ));
        pos = after + 4;
    }
    assert_eq!(pos, p.len(), "nothing after the questions");
    Seen {
        from,
        id: u16_at(p, 0),
        flags: u16_at(p, 2),
        counts,
        questions,
        question_bytes: p[12..pos].to_vec(),
    }
}

/// A legacy unicast response to `q` (RFC 6762 §6.7): its id and questions,
/// then A or AAAA records under `owner` in the answer section.
fn answer(q: &Seen, owner: &str, ips: &[IpAddr]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&q.id.to_be_bytes());
    p.extend_from_slice(&0x8400u16.to_be_bytes());
    for n in [q.counts[0], ips.len() as u16, 0, 0] {
        p.extend_from_slice(&n.to_be_bytes());
    }
    p.extend_from_slice(&q.question_bytes);
    for ip in ips {
        for label in owner.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        let (rtype, rdata) = match ip {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        p.extend_from_slice(&rtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p.extend_from_slice(&10u32.to_be_bytes());
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
    }
    p
}

/// A responder on 127.0.0.1 that reports every query it reads and sends
/// back whatever `reply` makes of the n-th (from 0).
async fn responder<F>(mut reply: F) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>)
where
    F: FnMut(usize, &Seen) -> Vec<Vec<u8>> + Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 9000];
        for n in 0.. {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let seen = read_query(&buf[..len], from);
            let packets = reply(n, &seen);
            // Reported before answering, so the test sees it once answered.
            if tx.send(seen).is_err() {
                return;
            }
            for packet in packets {
                socket.send_to(&packet, from).await.unwrap();
            }
        }
    });
    (addr, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut all = Vec::new();
    while let Ok(s) = rx.try_recv() {
        all.push(s);
    }
    all
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn asks_a_and_aaaa_and_reads_the_answer() {
    let (addr, mut seen) = responder(|_, q| {
        // Noise first: a packet too short to be DNS, an answer to another
        // query, an answer for another name; then the real one, in the
        // case avahi likes, with a link-local IPv6 address nobody can dial
        // without knowing its interface.
        let mut other_id = answer(q, "k3s-server.local", &[ip("10.6.6.6")]);
        other_id[0] ^= 0xff;
        vec![
            vec![0x12],
            other_id,
            answer(q, "elsewhere.local", &[ip("10.7.7.7")]),
            answer(
                q,
                "K3S-Server.Local",
                &[ip("fe80::1"), ip("fd00::20"), ip("192.168.1.20")],
            ),
        ]
    })
    .await;
    let addrs = resolve_at("k3s-server.LOCAL.", 7443, addr).await.unwrap();
    assert_eq!(
        addrs,
        vec![
            "192.168.1.20:7443".parse::<SocketAddr>().unwrap(),
            "[fd00::20]:7443".parse().unwrap(),
        ]
    );
    let queries = drain(&mut seen);
    assert_eq!(
        queries.len(),
        1,
        "answered at once, so asked once: {queries:?}"
    );
    let q = &queries[0];
    assert_ne!(
        q.from.port(),
        5353,
        "a one-shot query comes from an ephemeral port"
    );
    assert_eq!(q.flags, 0, "a standard query, recursion not desired");
    assert_eq!(q.counts, [2, 0, 0, 0]);
    assert_eq!(
        q.questions,
        vec![
            ("k3s-server.LOCAL".to_string(), TYPE_A, CLASS_IN),
            ("k3s-server.LOCAL".to_string(), TYPE_AAAA, CLASS_IN),
        ]
    );
}

#[tokio::test]
async fn silence_is_an_error_naming_the_host_within_the_bound() {
    let (addr, mut seen) = responder(|_, _| Vec::new()).await;
    let start = Instant::now();
    let err = resolve_at("quiet-box.local", 7150, addr)
        .await
        .unwrap_err()
        .to_string();
    let took = start.elapsed();
    assert!(err.contains("`quiet-box.local`"), "{err}");
    assert!(err.contains("within 3 s"), "{err}");
    assert!(err.contains("avahi-daemon"), "{err}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(3600),
        "gave up after {took:?}"
    );
    let queries = drain(&mut seen);
    assert_eq!(queries.len(), 2, "the query, then one resend: {queries:?}");
    assert_eq!(
        queries[0].id, queries[1].id,
        "a late answer to the first still counts"
    );
}

#[tokio::test]
async fn a_lost_query_is_sent_again() {
    let (addr, mut seen) = responder(|n, q| {
        if n == 0 {
            Vec::new()
        } else {
            vec![answer(q, "pi-4.local", &[ip("10.0.0.4")])]
        }
    })
    .await;
    let start = Instant::now();
    let addrs = resolve_at("pi-4.local", 3493, addr).await.unwrap();
    let took = start.elapsed();
    assert_eq!(addrs, vec!["10.0.0.4:3493".parse::<SocketAddr>().unwrap()]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
        "answered to the resend after {took:?}"
    );
    assert_eq!(drain(&mut seen).len(), 2);
}

#[tokio::test]
async fn only_local_names_are_asked_for() {
    let err = resolve_at(
        "collector.example.com",
        7150,
        "127.0.0.1:9".parse().unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a .local name"), "{err}");
    assert!(is_local_name("k3s-server.local"));
    assert!(is_local_name("K3S-SERVER.LOCAL."));
    assert!(!is_local_name(".local"));
    assert!(!is_local_name("local"));
    assert!(!is_local_name("k3s-server.localdomain"));
    assert!(!is_local_name("10.0.0.2"));
    assert!(!is_local_name("é.locaé"));
}

#[tokio::test]
async fn names_the_system_resolver_knows_skip_multicast_dns() {
    let start = Instant::now();
    let addrs = lookup_host("127.0.0.1", 7150).await.unwrap();
    assert_eq!(addrs, vec!["127.0.0.1:7150".parse::<SocketAddr>().unwrap()]);
    let addrs = lookup_host_blocking("::1", 3493).unwrap();
    assert_eq!(addrs, vec!["[::1]:3493".parse::<SocketAddr>().unwrap()]);
    assert!(start.elapsed() < Duration::from_secs(1));
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_hung_system_resolver_does_not_hold_up_multicast_dns() {
    let (dest, mut seen) =
        responder(|_, q| vec![answer(q, "k3s-server.local", &[ip("10.0.0.2")])]).await;
    let start = Instant::now();
    let hung = std::future::pending::<std::io::Result<Vec<SocketAddr>>>();
    let addrs = lookup_with(hung, "k3s-server.local", 7150, dest)
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(addrs, vec![addr("10.0.0.2:7150")]);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1000),
        "the system resolver had its head start, then Multicast DNS answered: {took:?}"
    );
    assert_eq!(drain(&mut seen).len(), 1);
}

#[tokio::test]
async fn a_system_answer_sends_no_query() {
    let (dest, mut seen) =
        responder(|_, q| vec![answer(q, "k3s-server.local", &[ip("10.0.0.2")])]).await;
    let system = async { Ok(vec![addr("192.168.8.8:7150")]) };
    let addrs = lookup_with(system, "k3s-server.local", 7150, dest)
        .await
        .unwrap();
    assert_eq!(addrs, vec![addr("192.168.8.8:7150")]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&mut seen).is_empty(), "no Multicast DNS query");
}

#[tokio::test]
async fn when_both_fail_the_error_names_both() {
    let (dest, _seen) = responder(|_, _| Vec::new()).await;
    let start = Instant::now();
    let system = async { Err(std::io::Error::other("Name or service not known")) };
    let err = lookup_with(system, "k3s-server.local", 7150, dest)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "cannot resolve `k3s-server.local`: the system resolver: Name or service not known; \
             no Multicast DNS answer for `k3s-server.local` within 3 s"
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_millis(3600));
}

#[tokio::test]
async fn a_system_resolver_failing_late_is_waited_for() {
    let (dest, _seen) = responder(|_, _| Vec::new()).await;
    let system = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        Ok(Vec::new())
    };
    let err = lookup_with(system, "k3s-server.local", 7150, dest)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the system resolver: it resolves to no address; no Multicast DNS answer"),
        "{err}"
    );
}

#[tokio::test]
async fn other_names_are_left_to_the_system_resolver() {
    let (dest, mut seen) = responder(|_, _| Vec::new()).await;
    let system = async { Err(std::io::Error::other("Name or service not known")) };
    let err = lookup_with(system, "collector.example", 7150, dest)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cannot resolve `collector.example` (Name or service not known)"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&mut seen).is_empty(), "no Multicast DNS query");
}
