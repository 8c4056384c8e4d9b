//! The programs the tests run, checked before a test starts. scripts/test.sh
//! installs them all once, before `cargo test` (tests/setup/install-test-tools.sh);
//! a test never installs anything: two running apt at once fail on its lock.

use std::path::Path;

/// The script that installs the test tools, from the repository root.
pub const INSTALL_SCRIPT: &str = "tests/setup/install-test-tools.sh";

/// NUT's programs the NUT tests run (Debian nut-server and nut-client).
pub const NUT: &[&str] = &[
    "/lib/nut/upsd",
    "/lib/nut/nutdrv_qx",
    "/lib/nut/dummy-ups",
    "/lib/nut/riello_ser",
    "/usr/bin/upsc",
];

/// Panics, naming the setup script and its `group`, unless every program
/// in `programs` is there.
pub fn require(group: &str, programs: &[&str]) {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}: install the test tools first, as scripts/test.sh does: sudo sh {INSTALL_SCRIPT} {group}",
        missing.join(", ")
    );
}
