//! The system calls the sensors need that std does not wrap: (f)statvfs,
//! sysinfo (load averages), sysconf(_SC_CLK_TCK) and the VideoCore mailbox
//! ioctl; and handing the sampling timerfd to tokio's epoll (see
//! `crate::ticker`), whose registration is `unsafe` since tokio 1.54 (I/O
//! safety).
//!
//! This is the agent's only unsafe code (lib.rs denies it everywhere else).
//! Each call is a thin wrapper with its safety argument beside it; callers
//! get safe functions returning `io::Result`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Registers `fd` with the runtime's reactor for readiness `interest`.
/// Must be called inside the runtime.
pub fn watch_fd<T: AsRawFd>(
    fd: T,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: the caller passes an owner of its fd (the ticker's `TimerFd`
    // holds an OwnedFd), so the fd stays open and the same for as long as
    // the AsyncFd holds `fd`, and is closed only when the AsyncFd drops it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| e.into_parts().1)
}

/// Sizes from statvfs(2), already multiplied by the fragment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
}

/// statvfs(2) of `path`.
pub fn statvfs(path: &Path) -> io::Result<FsSpace> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the
    // call and `out` points to writable memory of the right type and size.
    filled_statvfs(|out| unsafe { libc::statvfs(c_path.as_ptr(), out) })
}

/// fstatvfs(2) of an open descriptor (O_PATH is enough, since Linux 3.12).
pub fn fstatvfs(file: &File) -> io::Result<FsSpace> {
    // SAFETY: the fd is open for the call (borrowed from `file`) and `out`
    // points to writable memory of the right type and size.
    filled_statvfs(|out| unsafe { libc::fstatvfs(file.as_raw_fd(), out) })
}

/// Runs a statvfs-family `call` on a zeroed struct and converts what it
/// filled.
fn filled_statvfs(call: impl FnOnce(*mut libc::statvfs) -> libc::c_int) -> io::Result<FsSpace> {
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    if call(out.as_mut_ptr()) != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the struct was zeroed, so every byte is initialised, and the
    // call returned 0, so it filled it.
    let st = unsafe { out.assume_init() };
    statvfs_sizes(&st)
}

/// Opens `path` with O_PATH: a handle for fstatvfs, needing no read
/// permission on it.
pub fn open_path(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
}

// The fields are u64 on 64-bit targets but 32-bit on armhf (Pi 3 OS).
#[allow(clippy::unnecessary_cast)]
fn statvfs_sizes(st: &libc::statvfs) -> io::Result<FsSpace> {
    let frag = st.f_frsize as u64;
    Ok(FsSpace {
        size_bytes: (st.f_blocks as u64).saturating_mul(frag),
        free_bytes: (st.f_bfree as u64).saturating_mul(frag),
        available_bytes: (st.f_bavail as u64).saturating_mul(frag),
    })
}

/// The 1, 5 and 15 minute load averages from sysinfo(2): the kernel's own
/// fixed-point `avenrun` values that /proc/loadavg prints rounded to two
/// decimals, without generating and parsing that text.
pub fn load_averages() -> io::Result<[f64; 3]> {
    let mut out = std::mem::MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: `out` points to writable memory of the type sysinfo fills.
    let rc = unsafe { libc::sysinfo(out.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sysinfo returned 0, so it filled the struct (zeroed before).
    let info = unsafe { out.assume_init() };
    // linux/sysinfo.h: loads are scaled by 1 << SI_LOAD_SHIFT (16).
    Ok(info.loads.map(|l| l as f64 / 65536.0))
}

/// USER_HZ, the unit of the /proc/stat counters (100 on every Linux ABI, but
/// the documented way to learn it is sysconf).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// `_IOWR(100, 0, char *)`: the pointer's size is part of the number, so a
/// 32-bit userland (armhf Raspberry Pi OS) uses 0xC0046400 and a 64-bit one
/// 0xC0086400; the kernel accepts both (the first as its compat ioctl).
pub const IOCTL_MBOX_PROPERTY: u64 = ioc_readwrite(100, 0, std::mem::size_of::<*const u8>() as u64);

const fn ioc_readwrite(kind: u64, nr: u64, size: u64) -> u64 {
    // asm-generic/ioctl.h: dir << 30 | size << 16 | type << 8 | nr, with
    // dir = read | write = 3.
    (3 << 30) | (size << 16) | (kind << 8) | nr
}

/// Hands `buf` (a property-interface message whose first word is its size in
/// bytes) to the firmware through /dev/vcio; the reply overwrites it.
pub fn mailbox_property(vcio: &File, buf: &mut [u32]) -> io::Result<()> {
    let declared = buf.first().copied().unwrap_or(0) as usize;
    if declared != std::mem::size_of_val(buf) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mailbox buffer size word does not match the buffer",
        ));
    }
    // SAFETY: the driver copies exactly buf[0] bytes from and back to the
    // pointer; we checked that buf[0] is the length of `buf`, which is
    // writable and lives across the call. The fd is open for the call's
    // duration because `vcio` is borrowed.
    let rc = unsafe { libc::ioctl(vcio.as_raw_fd(), IOCTL_MBOX_PROPERTY as _, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_matches_the_pointer_width() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(IOCTL_MBOX_PROPERTY, 0xC008_6400);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(IOCTL_MBOX_PROPERTY, 0xC004_6400);
        assert_eq!(ioc_readwrite(100, 0, 4), 0xC004_6400);
    }

    #[test]
    fn statvfs_of_root_has_a_size_and_rejects_missing_paths() {
        let fs = statvfs(Path::new("/")).unwrap();
        assert!(fs.size_bytes > 0 && fs.free_bytes <= fs.size_bytes);
        assert!(fs.available_bytes <= fs.free_bytes);
        let err = statvfs(Path::new("/no/such/dir/here")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn load_averages_are_the_ones_proc_loadavg_prints() {
        // Both come from the same avenrun; the load can move between the
        // two reads (every 5 s), so read around it and accept either side.
        let text = || std::fs::read_to_string("/proc/loadavg").unwrap();
        let proc_load = |t: &str| -> Vec<f64> {
            t.split_whitespace()
                .take(3)
                .map(|w| w.parse().unwrap())
                .collect()
        };
        let before = proc_load(&text());
        let loads = load_averages().unwrap();
        let after = proc_load(&text());
        // /proc/loadavg adds FIXED_1/200 (10/2048, a bit under 0.005) and
        // truncates to hundredths, so it prints within 0.01 of the value.
        let close = |printed: f64, exact: f64| (printed - exact).abs() < 0.01;
        for i in 0..3 {
            assert!(
                close(before[i], loads[i]) || close(after[i], loads[i]),
                "load {i}: sysinfo {} vs /proc/loadavg {} / {}",
                loads[i],
                before[i],
                after[i]
            );
        }
    }

    #[test]
    fn user_hz_is_positive() {
        assert!(clock_ticks_per_second() >= 1);
    }
}
