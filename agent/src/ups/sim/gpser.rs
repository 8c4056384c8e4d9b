//! The device side of Riello GPSER: answers identification, nominal, status
//! and extended requests from a [`SimState`], and turns shutdown, restore,
//! cancel and test requests into [`SimEffect`]s. Faithful to what NUT's
//! riello_ser reads, so NUT's own driver can be pointed at it.

use crate::ups::gpser::protocol::{
    CheckKind, Frame, GI_DATA_LEN, MAX_FRAME_LEN, NAK, REPLY_ADDRESS, Request, STX, Status,
    decode_frame, encode_frame, find_frame, flag, push_nibbles,
};

use super::{Responder, SimEffect, SimState};

/// A simulated Riello single-phase UPS (the 800 VA reference unit).
#[derive(Debug, Clone)]
pub struct GpserResponder {
    /// The check the device asks for in its identification.
    pub check: CheckKind,
    pub baud: u32,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Battery capacity reported as nominal, Ah.
    pub battery_capacity_ah: u16,
    /// Real power rating as a share of the VA rating.
    pub power_factor: f64,
    pending: Vec<u8>,
}

impl GpserResponder {
    /// A Riello 800 VA that wants `check` after identification.
    pub fn new(check: CheckKind) -> GpserResponder {
        GpserResponder {
            check,
            baud: 9600,
            serial: "SIM0GPSER0000800".into(),
            model: "IDG 800".into(),
            firmware: "SWM050".into(),
            battery_capacity_ah: 9,
            power_factor: 0.6,
            pending: Vec::new(),
        }
    }

    /// The same unit at another line speed (1200 or 9600).
    pub fn at_baud(mut self, baud: u32) -> GpserResponder {
        self.baud = baud;
        self
    }

    /// The GI reply data: serial, model, firmware, flags (single phase,
    /// check type, one battery).
    pub fn identification_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(GI_DATA_LEN);
        pad(&mut data, &self.serial, 16);
        pad(&mut data, &self.model, 16);
        pad(&mut data, &self.firmware, 12);
        let check = match self.check {
            CheckKind::Sum => b'0',
            CheckKind::Crc => b'1',
        };
        data.extend_from_slice(&[
            b'1', b'0', b'0', b'0', check, b'0', b'0', b'1', b'0', b'0', b'0', b'0',
        ]);
        data
    }

    /// The GN reply data.
    pub fn nominal_data(&self, state: &SimState) -> Vec<u8> {
        let va = state.nominal_power_va.max(0.0).round() as u32;
        let mut d = Vec::new();
        push_nibbles(&mut d, va, 5);
        push_nibbles(
            &mut d,
            (f64::from(va) * self.power_factor).round() as u32,
            5,
        );
        push_nibbles(&mut d, clamp(state.nominal_battery_voltage_volts, 0xFFF), 3);
        push_nibbles(&mut d, u32::from(self.battery_capacity_ah), 3);
        push_nibbles(&mut d, clamp(state.nominal_voltage_volts, 0xFFF), 3);
        let hz = if state.input_frequency_hertz > 55.0 {
            600
        } else {
            500
        };
        push_nibbles(&mut d, hz, 3);
        d
    }

    /// The status the device reports for `state`.
    pub fn status(state: &SimState) -> Status {
        let mut s = Status::default();
        let output_on = !state.output_off;
        s.set_flag(flag::ON_BATTERY, !state.mains);
        s.set_flag(
            flag::LOW_BATTERY,
            state.charge_percent <= state.low_battery_percent,
        );
        s.set_flag(flag::OUTPUT_ON, output_on);
        s.set_flag(flag::CHARGING, state.mains && state.charge_percent < 100.0);
        s.set_flag(flag::OVERLOAD, state.load_percent > 100.0);
        let input_hz = if state.mains {
            to_u16(state.input_frequency_hertz * 10.0, 0xFFF)
        } else {
            0
        };
        s.input_frequency_dhz = input_hz;
        s.input_voltage_v[0] = to_u16(state.input_voltage_volts, 0xFFF);
        s.bypass_frequency_dhz = input_hz;
        s.bypass_voltage_v[0] = s.input_voltage_v[0];
        if output_on {
            // On battery the inverter runs at the nominal frequency.
            let out_hz = if state.mains {
                state.input_frequency_hertz
            } else if state.input_frequency_hertz > 55.0 {
                60.0
            } else {
                50.0
            };
            s.output_frequency_dhz = to_u16(out_hz * 10.0, 0xFFF);
            s.output_voltage_v[0] = to_u16(state.output_voltage_volts, 0xFFF);
            s.load_percent[0] = to_u16(state.load_percent, 0xFF);
        }
        s.battery_voltage_dv = to_u16(battery_voltage(state) * 10.0, 0xFFFF);
        s.battery_charge_percent = to_u16(state.charge_percent, 100);
        s.battery_runtime_min = Some(to_u16(runtime_seconds(state) / 60.0, 0xFFE));
        s.temperature_c = Some(to_u16(state.temperature_celsius, 0xFE));
        s
    }

    /// The RS reply data for `state` (single-phase layout).
    pub fn status_data(state: &SimState) -> Vec<u8> {
        let s = GpserResponder::status(state);
        let mut d = Vec::new();
        for f in s.flags {
            push_nibbles(&mut d, u32::from(f), 1);
        }
        let mut put = |v: u16, digits: usize| push_nibbles(&mut d, u32::from(v), digits);
        put(s.input_frequency_dhz, 3);
        put(s.input_voltage_v[0], 3);
        put(s.output_frequency_dhz, 3);
        put(s.output_voltage_v[0], 3);
        put(s.load_percent[0], 2);
        put(s.bypass_frequency_dhz, 3);
        put(s.bypass_voltage_v[0], 3);
        put(s.battery_voltage_dv, 4);
        put(s.battery_charge_percent, 2);
        put(s.battery_runtime_min.unwrap_or(0xFFF), 3);
        put(s.temperature_c.unwrap_or(0xFF), 2);
        d
    }

    /// The RE reply data: output power and current on L1.
    pub fn extended_data(&self, state: &SimState) -> Vec<u8> {
        let va = if state.output_off {
            0.0
        } else {
            state.nominal_power_va * state.load_percent / 100.0
        };
        let amps_dv = if state.output_voltage_volts > 0.0 {
            va / state.output_voltage_volts * 10.0
        } else {
            0.0
        };
        let mut d = vec![b'0'; 16];
        push_nibbles(&mut d, u32::from(to_u16(amps_dv, 0xFFFF)), 4);
        push_nibbles(&mut d, 0, 8);
        push_nibbles(&mut d, clamp(va * self.power_factor, 0xFFFFF), 5);
        push_nibbles(&mut d, 0, 10);
        push_nibbles(&mut d, clamp(va, 0xFFFFF), 5);
        push_nibbles(&mut d, 0, 10);
        d
    }

    fn reply(&self, command: [u8; 2], data: Vec<u8>, check: CheckKind) -> Vec<u8> {
        let frame = Frame {
            address: REPLY_ADDRESS,
            command,
            data,
        };
        encode_frame(&frame, check).unwrap_or_default()
    }

    /// Answers one request frame.
    fn answer(&self, state: &SimState, request: &Frame) -> (Vec<u8>, Option<SimEffect>) {
        let nak = |s: &GpserResponder| s.reply([NAK, request.command[1]], Vec::new(), s.check);
        let parsed = match Request::from_frame(request) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return (nak(self), None),
        };
        let ack = |s: &GpserResponder| s.reply(request.command, Vec::new(), s.check);
        match parsed {
            Request::Identify => (
                self.reply(request.command, self.identification_data(), CheckKind::Sum),
                None,
            ),
            Request::Nominal => (
                self.reply(request.command, self.nominal_data(state), self.check),
                None,
            ),
            Request::Status => (
                self.reply(
                    request.command,
                    GpserResponder::status_data(state),
                    self.check,
                ),
                None,
            ),
            Request::Extended => (
                self.reply(request.command, self.extended_data(state), self.check),
                None,
            ),
            Request::Shutdown { delay_s } => (
                ack(self),
                Some(SimEffect::Shutdown {
                    off_delay_seconds: f64::from(delay_s),
                    // A Riello shut down on battery powers up when mains
                    // returns; shut down on mains it stays off.
                    restore_delay_seconds: (!state.mains).then_some(0.0),
                }),
            ),
            Request::ShutdownRestore {
                off_delay_s,
                restore_delay_s,
            } => (
                ack(self),
                Some(SimEffect::Shutdown {
                    off_delay_seconds: f64::from(off_delay_s),
                    restore_delay_seconds: Some(f64::from(restore_delay_s)),
                }),
            ),
            Request::CancelShutdown => (ack(self), Some(SimEffect::CancelShutdown)),
            Request::BatteryTest => (ack(self), Some(SimEffect::StartTest { deep: false })),
            Request::PanelTest => (ack(self), None),
        }
    }
}

impl Responder for GpserResponder {
    fn protocol(&self) -> &'static str {
        "gpser"
    }

    fn baud(&self) -> u32 {
        self.baud
    }

    fn feed(&mut self, state: &SimState, input: &[u8]) -> (Vec<Vec<u8>>, Vec<SimEffect>) {
        self.pending.extend_from_slice(input);
        let mut replies = Vec::new();
        let mut effects = Vec::new();
        while let Some(range) = find_frame(&self.pending) {
            let raw: Vec<u8> = self.pending[range.clone()].to_vec();
            self.pending.drain(..range.end);
            if state.silent {
                continue;
            }
            // Identification comes before the host knows the check type, so
            // it is always summed; everything else uses the negotiated check.
            let check = if raw.get(3..5) == Some(b"GI") {
                CheckKind::Sum
            } else {
                self.check
            };
            // A damaged request gets no answer, as on a real line: the host
            // times out and asks again.
            let Ok(frame) = decode_frame(&raw, check) else {
                continue;
            };
            let (mut reply, effect) = self.answer(state, &frame);
            if state.noise_bytes > 0 {
                // Noise that cannot be taken for a frame start.
                let mut noisy = vec![0xFF; state.noise_bytes];
                noisy.append(&mut reply);
                reply = noisy;
            }
            replies.push(reply);
            effects.extend(effect);
        }
        // Bytes that cannot start a frame (riello_ser's SENTR probe 0xC0,
        // noise) are dropped; a partial frame waits for the rest.
        match self.pending.iter().rposition(|&b| b == STX) {
            Some(start) => {
                self.pending.drain(..start);
            }
            None => self.pending.clear(),
        }
        if self.pending.len() > MAX_FRAME_LEN {
            self.pending.clear();
        }
        (replies, effects)
    }
}

fn pad(out: &mut Vec<u8>, text: &str, width: usize) {
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_graphic() || *b == b' ')
        .take(width)
        .collect();
    out.extend_from_slice(&bytes);
    out.resize(out.len() + width - bytes.len(), b' ');
}

fn to_u16(value: f64, max: u16) -> u16 {
    if value.is_nan() {
        return 0;
    }
    value.round().clamp(0.0, f64::from(max)) as u16
}

fn clamp(value: f64, max: u32) -> u32 {
    if value.is_nan() {
        return 0;
    }
    value.round().clamp(0.0, f64::from(max)) as u32
}

/// A lead-acid block from 10.5 V empty to 13.5 V full, per 12 V nominal.
fn battery_voltage(state: &SimState) -> f64 {
    let charge = state.charge_percent.clamp(0.0, 100.0);
    state.nominal_battery_voltage_volts * (0.875 + 0.25 * charge / 100.0)
}

/// Runtime at the present load: the full-load runtime scaled by charge and
/// inversely by load.
fn runtime_seconds(state: &SimState) -> f64 {
    let charge = state.charge_percent.clamp(0.0, 100.0) / 100.0;
    let load = state.load_percent.max(1.0) / 100.0;
    state.full_load_runtime_seconds * charge / load
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ups::gpser::protocol::{Identification, Nominal};

    fn ask(responder: &mut GpserResponder, state: &SimState, request: Request) -> Frame {
        let bytes = request.encode(responder.check);
        let (replies, _) = responder.feed(state, &bytes);
        assert_eq!(replies.len(), 1, "one reply to {request:?}");
        decode_frame(&replies[0], request.check(responder.check)).expect("valid reply")
    }

    #[test]
    fn identification_reply_reads_back_with_the_chosen_check() {
        for check in [CheckKind::Sum, CheckKind::Crc] {
            let mut r = GpserResponder::new(check);
            let reply = ask(&mut r, &SimState::default(), Request::Identify);
            let ident = Identification::parse(&reply.data).expect("identification");
            assert_eq!(ident.check, check);
            assert_eq!(ident.model, "IDG 800");
            assert_eq!(ident.firmware, "SWM050");
            assert_eq!(ident.serial, "SIM0GPSER0000800");
            assert!(ident.input_single_phase() && ident.output_single_phase());
        }
    }

    #[test]
    fn nominal_reply_carries_the_ratings_of_the_state() {
        let mut r = GpserResponder::new(CheckKind::Crc);
        let reply = ask(&mut r, &SimState::default(), Request::Nominal);
        let n = Nominal::parse(&reply.data, b'1').expect("nominal");
        assert_eq!(n.power_va, 800);
        assert_eq!(n.real_power_w, 480);
        assert_eq!(n.battery_voltage_v, 12);
        assert_eq!(n.output_voltage_v, 230);
        assert_eq!(n.output_frequency_dhz, 500);
    }

    #[test]
    fn mains_loss_shows_as_on_battery_and_low_charge_as_low_battery() {
        let mut r = GpserResponder::new(CheckKind::Sum);
        let ident = Identification::parse(&r.identification_data()).expect("ident");
        let mut state = SimState::default();
        let status = Status::parse(&ask(&mut r, &state, Request::Status).data, &ident)
            .expect("status on mains");
        assert_eq!(status.tokens(), vec!["OL"]);
        state.mains = false;
        state.charge_percent = 15.0;
        state.input_voltage_volts = 0.0;
        let status = Status::parse(&ask(&mut r, &state, Request::Status).data, &ident)
            .expect("status on battery");
        assert_eq!(status.tokens(), vec!["OB", "LB"]);
        assert_eq!(status.battery_charge_percent, 15);
        // 300 s at full load, 15 % charge, 25 % load: 180 s.
        assert_eq!(status.battery_runtime_min, Some(3));
    }

    #[test]
    fn commands_become_effects_and_unknown_ones_a_nak() {
        let mut r = GpserResponder::new(CheckKind::Crc);
        let state = SimState {
            mains: false,
            ..SimState::default()
        };
        let (replies, effects) =
            r.feed(&state, &Request::Shutdown { delay_s: 120 }.encode(r.check));
        assert_eq!(replies.len(), 1);
        assert_eq!(
            effects,
            vec![SimEffect::Shutdown {
                off_delay_seconds: 120.0,
                restore_delay_seconds: Some(0.0)
            }]
        );
        let restore = Request::ShutdownRestore {
            off_delay_s: 30,
            restore_delay_s: 10,
        };
        let (_, effects) = r.feed(&state, &restore.encode(r.check));
        assert_eq!(
            effects,
            vec![SimEffect::Shutdown {
                off_delay_seconds: 30.0,
                restore_delay_seconds: Some(10.0)
            }]
        );
        let (_, effects) = r.feed(&state, &Request::CancelShutdown.encode(r.check));
        assert_eq!(effects, vec![SimEffect::CancelShutdown]);
        let unknown = encode_frame(
            &Frame {
                address: crate::ups::gpser::protocol::REQUEST_ADDRESS,
                command: *b"ZZ",
                data: vec![],
            },
            CheckKind::Crc,
        )
        .expect("frame");
        let (replies, effects) = r.feed(&state, &unknown);
        assert!(effects.is_empty());
        let reply = decode_frame(&replies[0], CheckKind::Crc).expect("nak frame");
        assert!(reply.is_nak());
    }

    #[test]
    fn split_requests_probe_bytes_and_bad_checks_are_handled_like_a_line() {
        let mut r = GpserResponder::new(CheckKind::Crc);
        let state = SimState::default();
        // riello_ser's SENTR probe: no answer, nothing kept.
        let (replies, _) = r.feed(&state, &[0xC0]);
        assert!(replies.is_empty());
        let bytes = Request::Status.encode(CheckKind::Crc);
        let (replies, _) = r.feed(&state, &bytes[..5]);
        assert!(replies.is_empty());
        let (replies, _) = r.feed(&state, &bytes[5..]);
        assert_eq!(replies.len(), 1);
        // A summed request to a CRC device is ignored.
        let (replies, _) = r.feed(&state, &Request::Status.encode(CheckKind::Sum));
        assert!(replies.is_empty());
        let silent = SimState {
            silent: true,
            ..SimState::default()
        };
        let (replies, _) = r.feed(&silent, &bytes);
        assert!(replies.is_empty());
    }
}
