//! Wake-on-LAN: the magic packet that powers on an x86 board whose firmware
//! has WoL enabled, for nodes the UPS cycle did not bring back (a BIOS left
//! at "stay off after power loss"). Raspberry Pi and Banana Pi boards have
//! no Wake-on-LAN: they boot when power returns, or not at all.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Why a MAC address in the config is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (six hex octets: \"aa:bb:cc:dd:ee:ff\")")]
pub struct BadMac(String);

/// Parses "aa:bb:cc:dd:ee:ff" (or with dashes, as Windows writes it).
pub fn parse_mac(text: &str) -> Result<[u8; 6], BadMac> {
    let bad = || BadMac(text.to_string());
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (octet, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// "aa:bb:cc:dd:ee:ff".
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Six 0xFF bytes, then the MAC sixteen times (AMD's Magic Packet format).
pub fn magic_packet(mac: &[u8; 6]) -> [u8; 102] {
    let mut p = [0xFFu8; 102];
    for chunk in p[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(mac);
    }
    p
}

/// Sends the magic packet for `mac` to `to` (the LAN's broadcast address).
pub async fn send(mac: &[u8; 6], to: SocketAddr) -> std::io::Result<()> {
    let bind: SocketAddr = if to.is_ipv6() {
        "[::]:0".parse().map_err(std::io::Error::other)?
    } else {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.set_broadcast(true)?;
    socket.send_to(&magic_packet(mac), to).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_with_colons_or_dashes_and_bad_ones_are_named() {
        let mac = [0xaa, 0xbb, 0xcc, 0x01, 0x02, 0x0f];
        assert_eq!(parse_mac("aa:bb:cc:01:02:0f"), Ok(mac));
        assert_eq!(parse_mac("AA-BB-CC-01-02-0F"), Ok(mac));
        assert_eq!(format_mac(&mac), "aa:bb:cc:01:02:0f");
        for bad in [
            "aa:bb:cc:01:02",
            "aa:bb:cc:01:02:0g",
            "aabbcc01020f",
            "a:bb:cc:01:02:0ff",
        ] {
            let err = parse_mac(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[tokio::test]
    async fn the_magic_packet_reaches_a_real_socket_in_wakeonlan_format() {
        let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        send(&mac, to).await.unwrap();
        let mut buf = [0u8; 200];
        let (n, _) = listener.recv_from(&mut buf).await.unwrap();
        assert_eq!(n, 102);
        assert_eq!(buf[..6], [0xFF; 6]);
        for i in 0..16 {
            assert_eq!(buf[6 + i * 6..12 + i * 6], mac, "repetition {i}");
        }
    }
}
