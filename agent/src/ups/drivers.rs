//! Picks and opens the driver a `[[ups]]` section asks for. The monitor calls
//! this at start and at every reconnect, so a replugged adapter is found again.

use crate::sysroot::SysRoot;
use crate::ups::config::UpsConfig;
use crate::ups::megatec::MegatecDriver;
use crate::ups::model::{UpsDriver, UpsError};
use crate::ups::serial::{PortSpec, resolve};

/// Opens the driver for `config`; for `auto`, the first protocol that answers.
pub fn open_driver(config: &UpsConfig, root: &SysRoot) -> Result<Box<dyn UpsDriver>, UpsError> {
    match config.protocol.as_str() {
        "megatec" => Ok(Box::new(open_megatec(config, root)?)),
        // wired at merge
        "gpser" => Err(UpsError::Unsupported("the gpser protocol")),
        // wired at merge
        "nut" => Err(UpsError::Unsupported("the nut protocol")),
        "auto" => {
            // Megatec first: a Q1 probe is harmless to other protocols.
            let mut m = open_megatec(config, root)?;
            match m.poll() {
                Ok(_) => Ok(Box::new(m)),
                Err(e) => Err(UpsError::Protocol(format!(
                    "no known protocol answered on {} (megatec: {e})",
                    m.port()
                ))),
            }
        }
        _ => Err(UpsError::Unsupported(
            "that protocol (use auto, megatec, gpser or nut)",
        )),
    }
}

fn open_megatec(config: &UpsConfig, root: &SysRoot) -> Result<MegatecDriver, UpsError> {
    let spec: PortSpec = config.port.parse().map_err(|e: String| UpsError::Open {
        port: config.port.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        hint: String::new(),
    })?;
    let path = resolve(&spec, root)?;
    MegatecDriver::open(&path, config.baud, config.battery_tuning())
}
