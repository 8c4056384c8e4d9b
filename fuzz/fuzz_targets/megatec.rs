//! Megatec replies as a UPS (or line noise) may send them: every parser must
//! return a value or an error, never panic, and what it returns must make
//! sense.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodewarden_agent::ups::megatec::protocol::{
    BatteryModel, RuntimeCal, command_outcome, parse_f, parse_i, parse_q1, status_tokens,
};
use nodewarden_agent::ups::sim::megatec::MegatecResponder;
use nodewarden_agent::ups::sim::{Responder, SimState};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = parse_q1(data) {
        let tokens = status_tokens(&q, false);
        assert!(tokens[0] == "OL" || tokens[0] == "OB");
        if let Some(v) = q.battery_voltage {
            let m = BatteryModel::guess(12.0, v, None, None, None);
            if let Some(c) = m.charge_percent(v) {
                assert!((0.0..=100.0).contains(&c), "charge {c}");
                if let Some(load) = q.load_percent {
                    if let Some(r) = RuntimeCal::default().estimate(c, load) {
                        assert!(r >= 0.0 && r.is_finite(), "runtime {r}");
                    }
                }
            }
        }
    }
    let _ = parse_f(data);
    if let Ok(i) = parse_i(data) {
        assert!(
            i.manufacturer.len() <= 15 * 3 && i.model.len() <= 10 * 3 && i.firmware.len() <= 10 * 3
        );
    }
    let _ = command_outcome(b"T\r", Some(data));
    // The simulator's side of the line takes client bytes just as blindly.
    let _ = MegatecResponder::default().feed(&SimState::default(), data);
});
