//! Resolving `.local` names by a Multicast DNS query of our own.
//!
//! A static musl build of the agent (the one within the 4 MB RSS goal) has
//! a resolver that reads only /etc/hosts and the DNS servers in
//! /etc/resolv.conf: no NSS, so the nss-mdns module that resolves
//! `k3s-server.local` on Raspberry Pi OS (with avahi-daemon) is never asked.
//! When the system resolver cannot resolve a `.local` name (or is slow to
//! say so), [`lookup_host`] asks the link itself: an RFC 6762 §5.1
//! one-shot query, A and AAAA, sent to 224.0.0.251:5353 from an ephemeral
//! port. A responder such as avahi-daemon sees the source port is not 5353
//! and answers with a conventional unicast DNS response to that address and
//! port (RFC 6762 §6.7, "legacy unicast"), so no socket of ours listens on
//! 5353 or joins the group. IPv4 multicast only: avahi answers AAAA
//! questions over IPv4 too, and every board here has IPv4.

pub mod message;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

pub use message::NameError;

/// Why a host name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// The system resolver failed on a name that is not `.local`.
    #[error("cannot resolve `{host}` ({system})")]
    Unresolved {
        /// The name asked for.
        host: String,
        /// What the system resolver said.
        #[source]
        system: SystemFailure,
    },
    /// Neither the system resolver nor Multicast DNS found a `.local` name.
    #[error("cannot resolve `{host}`: the system resolver: {system}; {mdns}")]
    BothFailed {
        /// The name asked for.
        host: String,
        /// What the system resolver said.
        system: SystemFailure,
        /// Why the Multicast DNS query found nothing.
        #[source]
        mdns: Box<MdnsError>,
    },
    /// Multicast DNS was asked for a name outside `.local`.
    #[error("`{host}` is not a .local name; Multicast DNS resolves only those")]
    NotLocal {
        /// The name asked for.
        host: String,
    },
    /// The name cannot go into a query.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// No socket for the query.
    #[error("cannot open a UDP socket for Multicast DNS: {0}")]
    Socket(#[source] std::io::Error),
    /// The socket refused the multicast TTL RFC 6762 asks for.
    #[error("cannot set the multicast TTL: {0}")]
    Ttl(#[source] std::io::Error),
    /// The query could not be sent on any interface.
    #[error("cannot send the Multicast DNS query for `{host}`: {source}")]
    Send {
        /// The name asked for.
        host: String,
        /// The last send error.
        #[source]
        source: std::io::Error,
    },
    /// Nobody answered in time.
    #[error(
        "no Multicast DNS answer for `{host}` within {} s: is avahi-daemon running on that host, with UDP port 5353 open? or use its IP address",
        GIVE_UP_AFTER.as_secs()
    )]
    NoAnswer {
        /// The name asked for.
        host: String,
    },
    /// The blocking lookup could not start its runtime.
    #[error("cannot start the Multicast DNS query: {0}")]
    Runtime(#[source] std::io::Error),
    /// The blocking lookup's thread died.
    #[error("the Multicast DNS query failed")]
    Panicked,
}

/// Why the system resolver found no address.
#[derive(Debug, thiserror::Error)]
pub enum SystemFailure {
    /// It answered, with nothing.
    #[error("it resolves to no address")]
    NoAddress,
    /// It failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where Multicast DNS queries go (RFC 6762 §3).
pub const MDNS_V4: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353));
/// A lost query or answer is sent again after this long.
const RESEND_AFTER: Duration = Duration::from_secs(1);
/// No answer by then: nobody on the link has the name.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3);
/// How long the system resolver has alone before a `.local` name is also
/// asked for by Multicast DNS.
const SYSTEM_HEAD_START: Duration = Duration::from_millis(500);
/// Largest Multicast DNS message (RFC 6762 §17).
const MAX_PACKET: usize = 9000;

/// The name without its trailing dot, when `host` is a `.local` name
/// (case-insensitive, as DNS names are).
fn local_name(host: &str) -> Option<&str> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let suffix = name.len().checked_sub(".local".len())?;
    (suffix > 0 && name.is_char_boundary(suffix) && name[suffix..].eq_ignore_ascii_case(".local"))
        .then_some(name)
}

/// Whether `host` is a `.local` name, which only Multicast DNS resolves.
pub fn is_local_name(host: &str) -> bool {
    local_name(host).is_some()
}

/// Addresses of `host`: the system resolver's, or, for a `.local` name it
/// cannot resolve, those a Multicast DNS query finds. The error names both
/// failures.
pub async fn lookup_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, MdnsError> {
    let system = async move {
        tokio::net::lookup_host((host, port))
            .await
            .map(|addrs| addrs.collect())
    };
    lookup_with(system, host, port, MDNS_V4).await
}

/// [`lookup_host`] with the system resolver's answer from `system` and the
/// Multicast DNS query sent to `dest`.
///
/// The system resolver gets a head start: it nearly always answers at once,
/// with addresses or a refusal, and then no multicast packet goes out for
/// nothing. When it hangs instead (its DNS server gone, say the router is
/// off in a power cut: 5 s and more), the query goes out alongside and the
/// first to find addresses wins, well inside the connector's 5 s timeout.
async fn lookup_with<F>(
    system: F,
    host: &str,
    port: u16,
    dest: SocketAddr,
) -> Result<Vec<SocketAddr>, MdnsError>
where
    F: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    let system = async move {
        match system.await {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) => Err(SystemFailure::NoAddress),
            Err(e) => Err(SystemFailure::Io(e)),
        }
    };
    if !is_local_name(host) {
        return system.await.map_err(|system| MdnsError::Unresolved {
            host: host.to_owned(),
            system,
        });
    }
    let both_failed = |system: SystemFailure, mdns: MdnsError| both_failed(host, system, mdns);
    tokio::pin!(system);
    let early = tokio::time::timeout(SYSTEM_HEAD_START, &mut system).await;
    let mdns = resolve_at(host, port, dest);
    match early {
        Ok(Ok(addrs)) => return Ok(addrs),
        Ok(Err(system)) => return mdns.await.map_err(|m| both_failed(system, m)),
        Err(_) => {}
    }
    tokio::pin!(mdns);
    let (mut system_failed, mut mdns_failed) = (None, None);
    loop {
        tokio::select! {
            r = &mut system, if system_failed.is_none() => match r {
                Ok(addrs) => return Ok(addrs),
                Err(e) => system_failed = Some(e),
            },
            r = &mut mdns, if mdns_failed.is_none() => match r {
                Ok(addrs) => return Ok(addrs),
                Err(e) => mdns_failed = Some(e),
            },
        }
        if system_failed.is_some()
            && mdns_failed.is_some()
            && let (Some(system), Some(mdns)) = (system_failed.take(), mdns_failed.take())
        {
            return Err(both_failed(system, mdns));
        }
    }
}

/// [`lookup_host`] for code that blocks (the NUT client runs on a thread of
/// its own).
pub fn lookup_host_blocking(host: &str, port: u16) -> Result<Vec<SocketAddr>, MdnsError> {
    use std::net::ToSocketAddrs;
    let system = match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if !addrs.is_empty() {
                return Ok(addrs);
            }
            SystemFailure::NoAddress
        }
        Err(e) => SystemFailure::Io(e),
    };
    if !is_local_name(host) {
        return Err(MdnsError::Unresolved {
            host: host.to_owned(),
            system,
        });
    }
    // A fresh thread is outside any tokio runtime, so a runtime of its own
    // can block there whatever thread called us.
    let mdns = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(MdnsError::Runtime)?
                .block_on(resolve_local(host, port))
        })
        .join()
        .unwrap_or(Err(MdnsError::Panicked))
    });
    mdns.map_err(|mdns| both_failed(host, system, mdns))
}

/// The error when neither the system resolver nor Multicast DNS found `host`.
fn both_failed(host: &str, system: SystemFailure, mdns: MdnsError) -> MdnsError {
    MdnsError::BothFailed {
        host: host.to_owned(),
        system,
        mdns: Box::new(mdns),
    }
}

/// Addresses of the `.local` name `host` by a one-shot Multicast DNS query,
/// IPv4 first, each with `port`.
pub async fn resolve_local(host: &str, port: u16) -> Result<Vec<SocketAddr>, MdnsError> {
    resolve_at(host, port, MDNS_V4).await
}

/// [`resolve_local`] with the query sent to `dest` (a test's responder).
async fn resolve_at(host: &str, port: u16, dest: SocketAddr) -> Result<Vec<SocketAddr>, MdnsError> {
    let name = local_name(host).ok_or_else(|| MdnsError::NotLocal {
        host: host.to_owned(),
    })?;
    // Random, so an answer to someone else's query is not taken for ours.
    let id: u16 = rand::random();
    let query = message::encode_query(id, name)?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .map_err(MdnsError::Socket)?;
    // RFC 6762 §11: responders check the TTL of multicast packets is 255.
    socket.set_multicast_ttl_v4(255).map_err(MdnsError::Ttl)?;

    let start = Instant::now();
    let deadline = start + GIVE_UP_AFTER;
    let mut resend_at = Some(start + RESEND_AFTER);
    send(&socket, &query, dest, host).await?;
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let wake = resend_at.map_or(deadline, |r| r.min(deadline));
        match tokio::time::timeout_at(wake, socket.recv_from(&mut buf)).await {
            Err(_) if Instant::now() >= deadline => break,
            Err(_) => {
                resend_at = None;
                // The first query went out; a failed resend is no reason to
                // stop waiting for its answer.
                let _ = send(&socket, &query, dest, host).await;
            }
            Ok(Ok((n, _from))) => {
                let Some(ips) = message::parse_response(&buf[..n], id, name) else {
                    continue;
                };
                let addrs = usable(ips, port);
                if !addrs.is_empty() {
                    return Ok(addrs);
                }
            }
            // An ICMP error from an earlier send (on Linux only a connected
            // socket gets those) or a short-lived failure: keep waiting,
            // without spinning on it.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err(MdnsError::NoAnswer {
        host: host.to_owned(),
    })
}

/// The addresses worth dialling, IPv4 first, without repeats. IPv6
/// link-local addresses are left out: they need the interface they are on,
/// which an answer over IPv4 does not tell.
fn usable(ips: Vec<IpAddr>, port: u16) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let v4 = ips.iter().filter(|ip| ip.is_ipv4());
    let v6 = ips
        .iter()
        .filter(|ip| matches!(ip, IpAddr::V6(v6) if !v6.is_unicast_link_local()));
    for ip in v4.chain(v6) {
        let addr = SocketAddr::new(*ip, port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// Sends the query to `dest`; to the multicast group, once on every
/// interface that can carry it: the kernel would pick only the one its
/// routes prefer, and a board on Wi-Fi for the internet and Ethernet for the
/// cluster would ask on the wrong one.
async fn send(
    socket: &UdpSocket,
    query: &[u8],
    dest: SocketAddr,
    host: &str,
) -> Result<(), MdnsError> {
    let failed = |source: std::io::Error| MdnsError::Send {
        host: host.to_owned(),
        source,
    };
    let interfaces = if dest.ip().is_multicast() {
        multicast_interfaces()
    } else {
        Vec::new()
    };
    if interfaces.is_empty() {
        return socket.send_to(query, dest).await.map(drop).map_err(failed);
    }
    let mut last = None;
    let mut sent = false;
    for interface in &interfaces {
        let result = match socket2::SockRef::from(socket).set_multicast_if_v4(interface) {
            Ok(()) => socket.send_to(query, dest).await.map(drop),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => sent = true,
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if !sent => Err(failed(e)),
        _ => Ok(()),
    }
}

/// One IPv4 address of every interface that is up, not loopback, and
/// multicast-capable.
fn multicast_interfaces() -> Vec<Ipv4Addr> {
    use nix::net::if_::InterfaceFlags as F;
    let Ok(all) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for ifa in all {
        if !ifa.flags.contains(F::IFF_UP | F::IFF_MULTICAST)
            || ifa.flags.contains(F::IFF_LOOPBACK)
            || names.contains(&ifa.interface_name)
        {
            continue;
        }
        if let Some(v4) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            out.push(v4.ip());
            names.push(ifa.interface_name);
        }
    }
    out
}
