//! A pseudo-terminal pair whose slave side looks like a serial port to any
//! program (NUT's drivers included). nix's openpty keeps this free of unsafe.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sys::termios::{self, SetArg};

/// The device side (master) and the path programs open (slave).
#[derive(Debug)]
pub struct Pty {
    /// What the simulated UPS reads requests from and writes replies to.
    pub master: File,
    /// Kept open so the master never sees a hang-up between clients.
    _slave: OwnedFd,
    /// /dev/pts/N.
    pub path: PathBuf,
}

/// Opens a pty pair with the slave in raw mode: without it the line
/// discipline would echo our replies back to us and turn CR into LF.
pub fn open() -> io::Result<Pty> {
    let pair = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    let mut t = termios::tcgetattr(&pair.slave).map_err(io::Error::from)?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
    let path = nix::unistd::ttyname(&pair.slave).map_err(io::Error::from)?;
    Ok(Pty {
        master: File::from(pair.master),
        _slave: pair.slave,
        path,
    })
}
