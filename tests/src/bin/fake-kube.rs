//! `fake-kube --scenario FILE [--port N] [--kubeconfig PATH]`: runs the fake
//! Kubernetes API server as a process. Prints `url http://127.0.0.1:PORT` and
//! `kubeconfig PATH` on stdout, then serves until killed. Control it with
//! `/fake/*` requests (see docs/testing-kubernetes.md).

use std::io::Write;
use std::path::PathBuf;

use nodewarden_tests::fakekube::{FakeKube, Scenario};

fn usage() -> ! {
    eprintln!("usage: fake-kube --scenario FILE.json [--port N] [--kubeconfig PATH]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut scenario, mut port, mut kubeconfig) = (None, 0u16, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scenario" => scenario = args.next().map(PathBuf::from),
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--kubeconfig" => kubeconfig = args.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    let s: Scenario = match scenario {
        Some(p) => {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
                eprintln!("fake-kube: cannot read {}: {e}", p.display());
                std::process::exit(1)
            });
            serde_json::from_str(&text).unwrap_or_else(|e| {
                eprintln!("fake-kube: {}: {e}", p.display());
                std::process::exit(1)
            })
        }
        None => Scenario::default(),
    };
    let fake = FakeKube::start_at(s, port, kubeconfig)
        .await
        .unwrap_or_else(|e| {
            eprintln!("fake-kube: cannot listen: {e}");
            std::process::exit(1)
        });
    // Whoever started us may stop reading after the url line; a closed
    // stdout must not end the server.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "url {}", fake.url());
    let _ = writeln!(out, "kubeconfig {}", fake.kubeconfig().display());
    let _ = out.flush();
    let _ = tokio::signal::ctrl_c().await;
}
