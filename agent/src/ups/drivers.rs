//! Picks and opens the driver a `[[ups]]` section asks for. The monitor calls
//! this at start and at every reconnect, so a replugged adapter is found again.

use crate::sysroot::SysRoot;
use crate::ups::config::{UpsConfig, UpsProtocol};
use crate::ups::gpser::GpserDriver;
use crate::ups::megatec::MegatecDriver;
use crate::ups::model::{UpsDriver, UpsError};
use crate::ups::nut::NutDriver;
use crate::ups::serial::{PortSpec, resolve};

/// Opens the driver for `config`; for `auto`, the first protocol that answers.
pub fn open_driver(config: &UpsConfig, root: &SysRoot) -> Result<Box<dyn UpsDriver>, UpsError> {
    match config.protocol {
        UpsProtocol::Megatec => Ok(Box::new(open_megatec(config, root)?)),
        UpsProtocol::Gpser => Ok(Box::new(GpserDriver::open(
            &port_path(config, root)?,
            config.baud,
        )?)),
        UpsProtocol::Nut => {
            let credentials = config.nut_user.clone().zip(config.nut_password.clone());
            Ok(Box::new(NutDriver::connect(&config.port, credentials)?))
        }
        UpsProtocol::Auto => {
            // Megatec first: a Q1 probe is harmless to other protocols.
            let mut m = open_megatec(config, root)?;
            let megatec_error = match m.poll() {
                Ok(_) => return Ok(Box::new(m)),
                Err(e) => e,
            };
            let port = m.port();
            drop(m);
            match GpserDriver::open(&port, config.baud) {
                Ok(g) => Ok(Box::new(g)),
                Err(gpser_error) => Err(UpsError::Protocol(format!(
                    "no known protocol answered on {port} (megatec: {megatec_error}; gpser: {gpser_error})"
                ))),
            }
        }
    }
}

fn open_megatec(config: &UpsConfig, root: &SysRoot) -> Result<MegatecDriver, UpsError> {
    let path = port_path(config, root)?;
    MegatecDriver::open(
        std::path::Path::new(&path),
        config.baud,
        config.battery_tuning(),
    )
}

/// The serial device `config.port` names now (by-id link, VID:PID, or a path).
fn port_path(config: &UpsConfig, root: &SysRoot) -> Result<String, UpsError> {
    let spec: PortSpec = config.port.parse().map_err(|e: String| UpsError::Open {
        port: config.port.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        hint: String::new(),
    })?;
    let path = resolve(&spec, root)?;
    Ok(path.display().to_string())
}
