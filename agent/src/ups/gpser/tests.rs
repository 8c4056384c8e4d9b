use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::driver::*;
use super::protocol::*;
use crate::ups::model::{UpsCommandKind, UpsDriver, UpsError};
use crate::ups::serial::SerialIo;
use crate::ups::sim::gpser::GpserResponder;
use crate::ups::sim::{Responder, SimEffect, SimState};

#[test]
fn crc_matches_the_crc16_riello_catalogue_check_value() {
    // CRC-16/RIELLO in the CRC catalogue: check("123456789") = 0x63d0.
    assert_eq!(check_value(CheckKind::Crc, b"123456789"), 0x63D0);
    assert_eq!(check_value(CheckKind::Sum, b"123456789"), 0x01DD);
}

#[test]
fn requests_are_byte_for_byte_what_riello_ser_sends() {
    // riello_prepare_gi: STX 0x20 0x22 'G' 'I' '0' '0', the sum of bytes 1..7
    // (0x132) as nibbles, ETX.
    assert_eq!(
        Request::Identify.encode(CheckKind::Crc),
        b"\x02\x20\x22GI000132\x03".to_vec()
    );
    // riello_prepare_cs with delay 300 (0x12c): length "04", data "12<".
    let cs = Request::Shutdown { delay_s: 300 }.encode(CheckKind::Sum);
    assert_eq!(&cs[..11], b"\x02\x20\x22CS04012<".as_slice());
    let sum: u16 = cs[1..11].iter().map(|&b| u16::from(b)).sum();
    assert_eq!(read_nibbles(&cs[11..15], 11).expect("nibbles") as u16, sum);
    // riello_prepare_cr: "0000" then the delay; we carry the off delay first.
    let cr = Request::ShutdownRestore {
        off_delay_s: 0,
        restore_delay_s: 5,
    }
    .frame();
    assert_eq!(cr.data, b"00000005".to_vec());
    assert_eq!(Request::BatteryTest.frame().data, b"005".to_vec());
}

#[test]
fn frames_round_trip_with_both_checks() {
    for check in [CheckKind::Sum, CheckKind::Crc] {
        let frame = Frame {
            address: REPLY_ADDRESS,
            command: *b"RS",
            data: b"0123456789:;<=>?".to_vec(),
        };
        let bytes = encode_frame(&frame, check).expect("encode");
        assert_eq!(decode_frame(&bytes, check), Ok(frame));
    }
}

#[test]
fn broken_frames_get_typed_errors() {
    let good = Request::Status.encode(CheckKind::Crc);
    assert_eq!(
        decode_frame(&good[..8], CheckKind::Crc),
        Err(FrameError::Short { len: 8 })
    );
    let mut wrong_start = good.clone();
    wrong_start[0] = b'X';
    assert_eq!(
        decode_frame(&wrong_start, CheckKind::Crc),
        Err(FrameError::WrongStart { found: b'X' })
    );
    let mut wrong_end = good.clone();
    *wrong_end.last_mut().expect("byte") = b'!';
    assert_eq!(
        decode_frame(&wrong_end, CheckKind::Crc),
        Err(FrameError::WrongEnd { found: b'!' })
    );
    let mut bad_len = good.clone();
    bad_len[6] = b'2';
    assert_eq!(
        decode_frame(&bad_len, CheckKind::Crc),
        Err(FrameError::BadLength {
            declared: 2,
            actual: 0
        })
    );
    let mut bad_nibble = good.clone();
    bad_nibble[5] = b'A';
    assert_eq!(
        decode_frame(&bad_nibble, CheckKind::Crc),
        Err(FrameError::BadNibble {
            offset: 5,
            byte: b'A'
        })
    );
    // A summed frame read as CRC (the NUT 2.8.0 failure mode, seen from here).
    assert!(matches!(
        decode_frame(&Request::Status.encode(CheckKind::Sum), CheckKind::Crc),
        Err(FrameError::BadCheck {
            kind: CheckKind::Crc,
            ..
        })
    ));
    let mut flipped = good.clone();
    flipped[3] = b'X';
    assert!(matches!(
        decode_frame(&flipped, CheckKind::Crc),
        Err(FrameError::BadCheck { .. })
    ));
    let huge = vec![b'0'; MAX_FRAME_LEN + 1];
    assert_eq!(
        decode_frame(&huge, CheckKind::Crc),
        Err(FrameError::Oversized {
            len: MAX_FRAME_LEN + 1
        })
    );
    let frame = Frame {
        address: REPLY_ADDRESS,
        command: *b"RS",
        data: vec![b'0'; MAX_DATA_LEN + 1],
    };
    assert!(matches!(
        encode_frame(&frame, CheckKind::Sum),
        Err(FrameError::Oversized { .. })
    ));
}

#[test]
fn frames_are_found_behind_noise_and_stray_start_bytes() {
    let frame = Request::Status.encode(CheckKind::Sum);
    let mut stream = vec![0xC0, 0xFF, ETX, STX, b'j', b'u', b'n', b'k'];
    stream.extend_from_slice(&frame);
    stream.extend_from_slice(b"\x02\x22");
    let range = find_frame(&stream).expect("frame");
    assert_eq!(&stream[range], frame.as_slice());
    assert_eq!(find_frame(b"\x02\x22\x20RS"), None);
}

fn status_with(flags: [u8; 5]) -> Status {
    Status {
        flags,
        battery_runtime_min: Some(10),
        ..Status::default()
    }
}

#[test]
fn status_tokens_follow_riello_ser_bit_for_bit() {
    assert_eq!(status_with([0b1000, 0, 0, 0, 0]).tokens(), vec!["OL"]);
    assert_eq!(
        status_with([0b0000, 0, 0, 0, 0]).tokens(),
        vec!["OL", "OFF"]
    );
    assert_eq!(status_with([0b1010, 0, 0, 0, 0]).tokens(), vec!["OB"]);
    assert_eq!(status_with([0b1011, 0, 0, 0, 0]).tokens(), vec!["OB", "LB"]);
    // Low battery without mains failure is not LB in riello_ser.
    assert_eq!(status_with([0b1001, 0, 0, 0, 0]).tokens(), vec!["OL"]);
    assert_eq!(
        status_with([0b1000, 0b1011, 0b0101, 0, 0b0100]).tokens(),
        vec!["OL", "BYPASS", "OVER", "TRIM", "BOOST", "RB", "CHRG"]
    );
}

fn rs_data(fields: &[(u32, usize)]) -> Vec<u8> {
    let mut d = Vec::new();
    for &(v, n) in fields {
        push_nibbles(&mut d, v, n);
    }
    d
}

fn single_phase() -> Identification {
    Identification {
        serial: String::new(),
        model: String::new(),
        firmware: String::new(),
        phases: b'1',
        check: CheckKind::Sum,
        batteries: 1,
    }
}

#[test]
fn status_reply_maps_to_the_reading_riello_ser_publishes() {
    // flags OL + output on + charging, 50.0 Hz, 229 V in, 50.0 Hz, 230 V out,
    // 37 % load, bypass 50.0 Hz 229 V, 13.5 V battery, 96 %, 42 min, 31 C.
    let data = rs_data(&[
        (0x8, 1),
        (0, 1),
        (0x4, 1),
        (0, 1),
        (0, 1),
        (500, 3),
        (229, 3),
        (500, 3),
        (230, 3),
        (37, 2),
        (500, 3),
        (229, 3),
        (135, 4),
        (96, 2),
        (42, 3),
        (31, 2),
    ]);
    assert_eq!(data.len(), RS_DATA_LEN_SINGLE);
    let status = Status::parse(&data, &single_phase()).expect("status");
    let r = status.reading();
    assert_eq!(r.status, vec!["OL", "CHRG"]);
    assert_eq!(r.input_voltage_volts, Some(229.0));
    assert_eq!(r.output_voltage_volts, Some(230.0));
    assert_eq!(r.input_frequency_hertz, Some(50.0));
    assert_eq!(r.load_percent, Some(37.0));
    assert_eq!(r.battery_voltage_volts, Some(13.5));
    assert_eq!(r.battery_charge_percent, Some(96.0));
    assert_eq!(r.battery_runtime_seconds, Some(2520.0));
    assert_eq!(r.temperature_celsius, Some(31.0));

    // Unknown runtime (0xFFF) hides charge too; 0xFF temperature is none.
    let mut unknown = data.clone();
    unknown[31..34].copy_from_slice(b"???");
    unknown[34..36].copy_from_slice(b"??");
    let r = Status::parse(&unknown, &single_phase())
        .expect("status")
        .reading();
    assert_eq!(r.battery_charge_percent, None);
    assert_eq!(r.battery_runtime_seconds, None);
    assert_eq!(r.temperature_celsius, None);

    // Output off: riello_ser zeroes the output frequency.
    let mut off = data.clone();
    off[0] = b'0';
    let s = Status::parse(&off, &single_phase()).expect("status");
    assert_eq!(s.output_frequency_dhz, 0);
    assert_eq!(s.tokens(), vec!["OL", "OFF", "CHRG"]);

    assert_eq!(
        Status::parse(&data[..30], &single_phase()),
        Err(GpserError::ShortReply {
            command: "RS".into(),
            len: 30,
            need: 36
        })
    );
    let mut garbage = data;
    garbage[7] = b'x';
    assert_eq!(
        Status::parse(&garbage, &single_phase()),
        Err(GpserError::Frame(FrameError::BadNibble {
            offset: 14,
            byte: b'x'
        }))
    );
}

#[test]
fn three_phase_replies_are_read_with_the_longer_layout() {
    let ident = Identification {
        phases: b'4',
        ..single_phase()
    };
    let mut fields = vec![(0x8, 1), (0, 1), (0, 1), (0, 1), (0, 1)];
    fields.extend([(500, 3), (400, 3), (500, 3), (401, 3), (30, 2)]);
    fields.extend([(500, 3), (400, 3), (2400, 4), (80, 2), (20, 3), (25, 2)]);
    fields.extend([(402, 3), (403, 3)]);
    fields.extend([(404, 3), (33, 2), (0, 3), (405, 3), (36, 2), (0, 3)]);
    let data = rs_data(&fields);
    assert_eq!(data.len(), RS_DATA_LEN_THREE_THREE);
    let s = Status::parse(&data, &ident).expect("status");
    assert_eq!(s.input_voltage_v, [400, 402, 403]);
    assert_eq!(s.output_voltage_v, [401, 404, 405]);
    assert_eq!(s.reading().load_percent, Some(33.0));
    // Three-phase nominal power is in hundreds of VA.
    let gn = rs_data(&[
        (1_000_000 / 100 * 100, 5),
        (800_000 / 100, 5),
        (240, 3),
        (9, 3),
        (230, 3),
        (500, 3),
    ]);
    let n = Nominal::parse(&gn, b'4').expect("nominal");
    assert_eq!(n.power_va, 10_000);
}

#[test]
fn identification_reads_model_firmware_and_check_type() {
    let mut r = GpserResponder::new(CheckKind::Crc);
    r.model = "IDG 800 LONGNAME".into();
    let ident = Identification::parse(&r.identification_data()).expect("ident");
    // riello_ser keeps 15 of the 16 model characters.
    assert_eq!(ident.model, "IDG 800 LONGNAM");
    assert_eq!(ident.check, CheckKind::Crc);
    let mut data = r.identification_data();
    data[48] = b'7';
    assert_eq!(
        Identification::parse(&data),
        Err(GpserError::UnknownCheck('7'))
    );
}

/// A simulated Riello on the far end of a socket pair.
struct Device {
    state: Arc<Mutex<SimState>>,
    effects: Arc<Mutex<Vec<SimEffect>>>,
}

fn device(check: CheckKind) -> (UnixStream, Device) {
    let (host, mut dev) = UnixStream::pair().expect("socketpair");
    let state = Arc::new(Mutex::new(SimState::default()));
    let effects = Arc::new(Mutex::new(Vec::new()));
    let (s, e) = (state.clone(), effects.clone());
    thread::spawn(move || {
        let mut responder = GpserResponder::new(check);
        let mut buf = [0u8; 256];
        while let Ok(n) = dev.read(&mut buf) {
            if n == 0 {
                break;
            }
            let snapshot = s.lock().expect("state").clone();
            let (replies, effects) = responder.feed(&snapshot, &buf[..n]);
            e.lock().expect("effects").extend(effects);
            for r in replies {
                if dev.write_all(&r).is_err() {
                    return;
                }
            }
        }
    });
    (host, Device { state, effects })
}

#[test]
fn driver_reads_identity_ratings_and_status_from_a_simulated_riello() {
    for check in [CheckKind::Sum, CheckKind::Crc] {
        let (line, dev) = device(check);
        let mut driver = GpserDriver::over(line, "sim", None).expect("driver");
        assert_eq!(driver.identification().check, check);
        assert_eq!(driver.baud(), 9600);
        let id = driver.identify().expect("identify");
        assert_eq!(id.manufacturer, "RPS S.p.a.");
        assert_eq!(id.model, "IDG 800");
        assert_eq!(id.driver, "gpser");
        let ratings = driver.ratings().expect("ratings");
        assert_eq!(ratings.power_va, Some(800.0));
        assert_eq!(ratings.output_voltage_volts, Some(230.0));
        assert_eq!(ratings.frequency_hertz, Some(50.0));
        let r = driver.poll().expect("poll");
        assert_eq!(r.status, vec!["OL"]);
        assert_eq!(r.load_percent, Some(25.0));
        assert_eq!(r.battery_charge_percent, Some(100.0));
        {
            let mut s = dev.state.lock().expect("state");
            s.mains = false;
            s.input_voltage_volts = 0.0;
            s.charge_percent = 62.0;
            s.load_percent = 41.0;
        }
        let r = driver.poll().expect("poll");
        assert_eq!(r.status, vec!["OB"]);
        assert_eq!(r.input_voltage_volts, Some(0.0));
        assert_eq!(r.battery_charge_percent, Some(62.0));
        assert_eq!(r.load_percent, Some(41.0));
        assert!(driver.extended().expect("extended").is_some());
    }
}

#[test]
fn shutdown_return_cuts_and_restores_on_battery_and_on_mains() {
    let (line, dev) = device(CheckKind::Crc);
    let mut driver = GpserDriver::over(line, "sim", None).expect("driver");
    dev.state.lock().expect("state").mains = false;
    driver
        .command(UpsCommandKind::ShutdownReturn {
            off_delay_s: 90,
            restore_delay_s: 10,
        })
        .expect("shutdown on battery");
    // Mains came back mid-sequence: the cycle must still happen.
    dev.state.lock().expect("state").mains = true;
    driver
        .command(UpsCommandKind::ShutdownReturn {
            off_delay_s: 60,
            restore_delay_s: 10,
        })
        .expect("shutdown on mains");
    driver
        .command(UpsCommandKind::CancelShutdown)
        .expect("cancel");
    driver
        .command(UpsCommandKind::BatteryTestQuick)
        .expect("test");
    assert_eq!(
        *dev.effects.lock().expect("effects"),
        vec![
            SimEffect::Shutdown {
                off_delay_seconds: 90.0,
                restore_delay_seconds: Some(0.0)
            },
            // CR's field order is unpublished: both fields carry the off
            // delay, so the cut never comes early whichever is which.
            SimEffect::Shutdown {
                off_delay_seconds: 60.0,
                restore_delay_seconds: Some(60.0)
            },
            SimEffect::CancelShutdown,
            SimEffect::StartTest { deep: false },
        ]
    );
    assert!(matches!(
        driver.command(UpsCommandKind::BeeperToggle),
        Err(UpsError::Unsupported("beeper.toggle"))
    ));
    assert!(matches!(
        driver.command(UpsCommandKind::ShutdownReturn {
            off_delay_s: 70_000,
            restore_delay_s: 0
        }),
        Err(UpsError::Refused { .. })
    ));
}

#[test]
fn a_silent_ups_is_a_timeout_and_line_noise_is_skipped() {
    let (line, dev) = device(CheckKind::Sum);
    let mut driver = GpserDriver::over(line, "sim", Some(1200)).expect("driver");
    assert_eq!(driver.baud(), 1200);
    driver.set_reply_timeout(Duration::from_millis(100), 2);
    dev.state.lock().expect("state").silent = true;
    let err = driver.poll().expect_err("silent");
    assert!(matches!(err, UpsError::Timeout { tries: 2, .. }), "{err}");
    assert!(err.to_string().contains("no reply from the UPS on sim"));
    dev.state.lock().expect("state").silent = false;
    dev.state.lock().expect("state").noise_bytes = 7;
    assert_eq!(
        driver.poll().expect("poll through noise").status,
        vec!["OL"]
    );
}

#[test]
fn a_peer_that_is_not_a_riello_fails_with_a_clear_error() {
    let (line, mut peer) = UnixStream::pair().expect("socketpair");
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = peer.read(&mut buf) {
            if n == 0 || peer.write_all(b"\x02\x22\x20GI02X0000\x03").is_err() {
                break;
            }
        }
    });
    let err = match GpserDriver::over(line, "peer", Some(9600)) {
        Ok(_) => panic!("a broken peer was accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, UpsError::Protocol(_)), "{err}");
    assert!(
        err.to_string()
            .contains("frame declares 2 data bytes but carries 1"),
        "{err}"
    );
}

/// A line whose speed the far end can see: the simulated UPS only makes
/// sense of bytes sent at its own speed, as on a real wire.
struct SpeedLine {
    stream: UnixStream,
    baud: Arc<std::sync::atomic::AtomicU32>,
}

impl Read for SpeedLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for SpeedLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl SerialIo for SpeedLine {
    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        self.baud.store(baud, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        SerialIo::set_read_timeout(&mut self.stream, timeout)
    }
    fn discard_input(&mut self) -> io::Result<()> {
        self.stream.discard_input()
    }
}

#[test]
fn a_1200_baud_riello_is_found_after_9600_fails() {
    let (host, mut dev) = UnixStream::pair().expect("socketpair");
    let baud = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = baud.clone();
    thread::spawn(move || {
        let mut responder = GpserResponder::new(CheckKind::Crc).at_baud(1200);
        let state = SimState::default();
        let mut buf = [0u8; 256];
        while let Ok(n) = dev.read(&mut buf) {
            if n == 0 {
                break;
            }
            if seen.load(std::sync::atomic::Ordering::SeqCst) != responder.baud() {
                continue;
            }
            let (replies, _) = responder.feed(&state, &buf[..n]);
            for r in replies {
                if dev.write_all(&r).is_err() {
                    return;
                }
            }
        }
    });
    let line = SpeedLine { stream: host, baud };
    let mut driver = GpserDriver::over(line, "sim", None).expect("driver");
    assert_eq!(driver.baud(), 1200);
    assert_eq!(driver.poll().expect("poll").status, vec!["OL"]);
}

#[test]
fn a_port_held_by_another_program_is_reported_busy() {
    // One opener for every serial driver: the Riello gets the same hint.
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = crate::ups::sim::SimUps::spawn(
        GpserResponder::new(CheckKind::Sum),
        &dir.path().join("ups"),
    )
    .expect("sim");
    let link = sim.link().display().to_string();
    let _first =
        crate::ups::serial::open_port(&link, 9600, Duration::from_secs(1)).expect("first open");
    let err = GpserDriver::open(&link, Some(9600))
        .err()
        .expect("second open must fail")
        .to_string();
    assert!(err.contains("another program holds the port"), "{err}");
}
