//! Any bytes through the GPSER frame decoder and reply parsers: typed errors,
//! never a panic; whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewarden_agent::ups::gpser::protocol::{
    CheckKind, Extended, Identification, Nominal, Request, Status, decode_frame, encode_frame,
    find_frame,
};

fuzz_target!(|data: &[u8]| {
    for check in [CheckKind::Sum, CheckKind::Crc] {
        if let Ok(frame) = decode_frame(data, check) {
            assert_eq!(encode_frame(&frame, check).as_deref(), Ok(data));
            let _ = Request::from_frame(&frame);
        }
    }
    if let Some(range) = find_frame(data) {
        assert!(range.start < range.end && range.end <= data.len());
    }
    if let Ok(ident) = Identification::parse(data) {
        let _ = Status::parse(data, &ident);
        let _ = Nominal::parse(data, ident.phases);
    }
    for phases in [b'1', b'3', b'4'] {
        let ident = Identification {
            serial: String::new(),
            model: String::new(),
            firmware: String::new(),
            phases,
            check: CheckKind::Sum,
            batteries: 1,
        };
        if let Ok(status) = Status::parse(data, &ident) {
            let _ = status.reading();
        }
        let _ = Nominal::parse(data, phases);
    }
    let _ = Extended::parse(data);
});
