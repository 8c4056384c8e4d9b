//! Regenerates the committed bindings from the .proto files with protox (a
//! pure-Rust protobuf compiler, so no protoc is needed) and fails on any
//! difference. Run with `NODEWARDEN_BLESS=1` to rewrite them after editing a
//! .proto file.

use std::path::PathBuf;

#[test]
fn generated_bindings_are_up_to_date() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let protos: Vec<PathBuf> = ["agent", "telemetry", "ups", "admin", "join", "power"]
        .iter()
        .map(|n| root.join(format!("nodewarden/v1/{n}.proto")))
        .collect();
    let fds = protox::compile(&protos, [&root]).expect("the .proto files compile");

    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // JSON for `--json` outputs and test fixtures.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("bindings generate");

    let fresh = std::fs::read_to_string(out.path().join("nodewarden.v1.rs")).unwrap();
    let committed_path = root.join("src/generated/nodewarden.v1.rs");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if fresh != committed {
        if std::env::var_os("NODEWARDEN_BLESS").is_some() {
            std::fs::write(&committed_path, fresh).unwrap();
            return;
        }
        panic!(
            "src/generated/nodewarden.v1.rs is stale: run \
             `NODEWARDEN_BLESS=1 cargo test -p nodewarden-proto --test bootstrap` and commit it"
        );
    }
}
