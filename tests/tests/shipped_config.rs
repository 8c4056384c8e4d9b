//! The config files the packages ship load with the real loaders, and a typo
//! in one is reported with file, line and key, exit status 78.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use nodewarden_tests::bin;

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/etc")
        .join(name)
}

#[test]
fn shipped_configs_are_valid() {
    for (program, file) in [
        ("nodewarden", "collector.toml"),
        ("nodewarden-agent", "agent.toml"),
    ] {
        let out = Command::new(bin(program))
            .arg("check-config")
            .arg(shipped(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_typo_names_file_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "collector = \"http://10.0.0.2:7150\"\nsample_intervall = \"5s\"\n",
    )
    .unwrap();
    let out = Command::new(bin("nodewarden-agent"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", path.display())), "{err}");
    assert!(err.contains("sample_intervall"), "{err}");
}
