//! Every config key the loaders accept is in the shipped file (commented
//! out, with its default) and in the operator's guide: the file and the
//! guide cannot fall behind the code. The keys come from the loaders
//! themselves: an unknown key in a table is refused with the list of the
//! ones it takes (serde's `deny_unknown_fields`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use nodewarden_tests::bin;

fn repo(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The keys `program check-config` accepts in `table` ("" for the top).
fn keys(program: &str, table: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(&path, format!("{table}\nzz_no_such_key = 1\n")).unwrap();
    let out = Command::new(bin(program))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ...".
    let list = err
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("{program} {table}: no key list in {err:?}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn check(program: &str, shipped: &str, tables: &[&str]) {
    let file = repo(&format!("packaging/etc/{shipped}"));
    let guide = repo("docs/operator-guide.md");
    let mut missing = Vec::new();
    for table in tables {
        let ks = keys(program, table);
        assert!(ks.len() > 1, "{program} {table}: {ks:?}");
        for k in ks {
            // Sub-tables are checked on their own.
            if [
                "domain",
                "notify",
                "roles",
                "wake_mac",
                "ups",
                "commands",
                "standalone",
                "retention",
                "events",
                "kubernetes",
                "power",
                "nut_server",
                "web",
                "node_health",
                "taint",
                "user",
                "alias",
            ]
            .contains(&k.as_str())
            {
                continue;
            }
            let in_file = file.lines().any(|l| {
                l.trim_start_matches('#')
                    .trim_start()
                    .starts_with(&format!("{k} ="))
            });
            // A row may name the table too: "`[events] temperature_high_celsius`".
            let in_guide = guide.contains(&format!("`{k}`")) || guide.contains(&format!("] {k}`"));
            if !in_file {
                missing.push(format!("{shipped} {table}: `{k}`"));
            }
            if !in_guide {
                missing.push(format!("docs/operator-guide.md {table}: `{k}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "config keys not documented:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_collector_key_is_in_the_shipped_file_and_the_guide() {
    check(
        "nodewarden",
        "collector.toml",
        &[
            "",
            "[retention]",
            "[events]",
            "[kubernetes]",
            "[node_health]",
            "[[node_health.taint]]",
            "[power]",
            "[power.notify]",
            "[[power.domain]]",
            "[nut_server]",
            "[[nut_server.user]]",
            "[web]",
        ],
    );
}

#[test]
fn every_agent_key_is_in_the_shipped_file_and_the_guide() {
    check(
        "nodewarden-agent",
        "agent.toml",
        &["", "[commands]", "[standalone]", "[[ups]]"],
    );
}
