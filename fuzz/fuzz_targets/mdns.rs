//! Any datagram through the Multicast DNS response parser (any host on the
//! link can send one to the agent's query port): `None` or addresses, never
//! a panic, and names read through pointers stay inside the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewarden_agent::mdns::message::{encode_query, parse_response, read_name};

fuzz_target!(|data: &[u8]| {
    let id = data.first().map_or(0, |b| u16::from(*b) << 8 | 0x42);
    let _ = parse_response(data, id, "k3s-server.local");
    if data.len() >= 2 {
        let packet_id = u16::from_be_bytes([data[0], data[1]]);
        // Parsing is a pure function of the bytes.
        assert_eq!(
            parse_response(data, packet_id, "k3s-server.local"),
            parse_response(data, packet_id, "K3S-SERVER.local")
        );
    }
    for start in [0, 12, data.len() / 2] {
        if let Some((name, end)) = read_name(data, start) {
            assert!(end <= data.len(), "a name ends inside the packet");
            assert!(name.len() <= 255, "names are at most 255 bytes");
        }
    }
    // A query for a name the fuzzer made up reads back as that name.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(query) = encode_query(7, text)
    {
        let (name, _) = read_name(&query, 12).expect("our own query reads back");
        assert_eq!(
            String::from_utf8_lossy(&name).to_ascii_lowercase(),
            text.trim_end_matches('.').to_ascii_lowercase()
        );
    }
});
