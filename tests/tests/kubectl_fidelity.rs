//! Holds the fake API server to the real kubectl: `get nodes`, `cordon`,
//! `drain --ignore-daemonsets --delete-emptydir-data` (a PDB that blocks,
//! then allows; a StatefulSet pod recreated) and `uncordon` must give the
//! output, exit codes and resulting state they give on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nodewarden_tests::fakekube::FakeKubeProcess;
use serde_json::Value;

const SCENARIO: &str = r#"{
  "time_factor": 0.05,
  "pod_startup_seconds": 1,
  "nodes": [
    {"name": "s1", "role": "server"},
    {"name": "w1"},
    {"name": "w2"}
  ],
  "pods": [
    {"name": "web-0", "node": "w1", "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 10},
    {"name": "web-1", "node": "w2", "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 10},
    {"name": "cache-7f9c4-abcde", "node": "w1", "owner_kind": "ReplicaSet", "owner_name": "cache-7f9c4", "empty_dir": true, "grace_seconds": 20},
    {"namespace": "kube-system", "name": "svclb-traefik-w1", "node": "w1", "owner_kind": "DaemonSet", "owner_name": "svclb-traefik"},
    {"namespace": "kube-system", "name": "svclb-traefik-w2", "node": "w2", "owner_kind": "DaemonSet", "owner_name": "svclb-traefik"},
    {"namespace": "kube-system", "name": "static-w1", "node": "w1", "mirror": true},
    {"name": "scratch", "node": "w2"}
  ],
  "pdbs": [{"name": "web", "selector": {"app": "web"}, "min_available": 2}]
}"#;

/// The kubectl binaries to test: $KUBECTL, else `kubectl` on PATH and the
/// versioned ones the Google Cloud SDK puts beside it (1.33 is the target).
fn kubectls() -> Vec<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return vec![PathBuf::from(k)];
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    let Some(kubectl) = on_path else {
        panic!(
            "kubectl not found on PATH. This test holds the fake API server to the real kubectl. \
             Install it (Debian: add the Kubernetes apt repository https://pkgs.k8s.io/core:/stable:/v1.33/deb/ \
             and `apt-get install -y kubectl`, or `gcloud components install kubectl`), or set KUBECTL=/path/to/kubectl. \
             The CI image ships it."
        )
    };
    let mut out = vec![kubectl.clone()];
    if let Ok(real) = std::fs::canonicalize(&kubectl) {
        let v133 = real.with_file_name("kubectl.1.33");
        if v133.is_file() {
            out.push(v133);
        }
    }
    out
}

fn run(kubectl: &PathBuf, fake: &FakeKubeProcess, args: &[&str]) -> Output {
    Command::new(kubectl)
        .env("KUBECONFIG", &fake.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(args)
        .output()
        .expect("run kubectl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn state(fake: &FakeKubeProcess) -> Value {
    fake.control("GET", "/fake/state")
}

fn node(fake: &FakeKubeProcess, name: &str) -> Value {
    state(fake)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .unwrap()
        .clone()
}

fn pods_on(fake: &FakeKubeProcess, node: &str) -> Vec<String> {
    let mut v: Vec<String> = state(fake)["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn pod(fake: &FakeKubeProcess, name: &str) -> Option<Value> {
    state(fake)["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == name)
        .cloned()
}

/// `kubectl get nodes` columns split on whitespace, by node name.
fn node_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn check(kubectl: &PathBuf) {
    let fake = FakeKubeProcess::spawn(SCENARIO);
    let who = kubectl.display();
    eprintln!("holding the fake to {who}");

    let out = run(kubectl, &fake, &["get", "nodes"]);
    assert!(
        out.status.success(),
        "{who} get nodes: {}",
        text(&out.stderr)
    );
    let rows = node_rows(&text(&out.stdout));
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{who}"
    );
    assert_eq!(
        rows[1][..3],
        ["s1", "Ready", "control-plane,etcd,master"],
        "{who}"
    );
    assert_eq!(rows[2][..3], ["w1", "Ready", "<none>"], "{who}");
    assert_eq!(rows.len(), 4);

    let out = run(kubectl, &fake, &["cordon", "w1"]);
    assert!(out.status.success(), "{who} cordon: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "node/w1 cordoned", "{who}");
    let n = node(&fake, "w1");
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(
        n["spec"]["taints"][0]["key"],
        "node.kubernetes.io/unschedulable"
    );
    let out = run(kubectl, &fake, &["cordon", "w1"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        "node/w1 already cordoned",
        "{who}"
    );
    let out = run(kubectl, &fake, &["get", "nodes", "w1"]);
    assert_eq!(
        node_rows(&text(&out.stdout))[1][1],
        "Ready,SchedulingDisabled",
        "{who}"
    );

    // Drain while the PDB allows no disruption; let it through once kubectl
    // has been refused.
    let old_web0 = pod(&fake, "web-0").unwrap()["metadata"]["uid"].clone();
    let drain = {
        let (kubectl, kubeconfig) = (kubectl.clone(), fake.kubeconfig.clone());
        std::thread::spawn(move || {
            Command::new(kubectl)
                .env("KUBECONFIG", kubeconfig)
                .args([
                    "drain",
                    "w1",
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                    "--timeout=120s",
                ])
                .output()
                .expect("run kubectl drain")
        })
    };
    let t0 = Instant::now();
    loop {
        let log = fake.control("GET", "/fake/requests");
        let refused = log.as_array().unwrap().iter().any(|r| {
            r["path"] == "/api/v1/namespaces/default/pods/web-0/eviction" && r["status"] == 429
        });
        if refused {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{who} never tried to evict web-0"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pod(&fake, "web-0").is_some());
    fake.control(
        "POST",
        "/fake/pdb?namespace=default&name=web&minAvailable=1",
    );
    let out = drain.join().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{who} drain failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("node/w1 already cordoned"), "{stdout}");
    assert!(stdout.contains("evicting pod default/web-0"), "{stdout}");
    assert!(stdout.contains("pod/web-0 evicted"), "{stdout}");
    assert!(stdout.contains("pod/cache-7f9c4-abcde evicted"), "{stdout}");
    assert!(stdout.trim_end().ends_with("node/w1 drained"), "{stdout}");
    assert!(
        stderr.contains("Warning: ignoring DaemonSet-managed Pods: kube-system/svclb-traefik-w1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error when evicting pods/\"web-0\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(
        !stdout.contains("static-w1") && !stderr.contains("static-w1"),
        "mirror pods are passed over silently"
    );
    assert_eq!(
        pods_on(&fake, "w1"),
        ["static-w1", "svclb-traefik-w1"],
        "{who}"
    );
    let web0 = pod(&fake, "web-0").expect("StatefulSet recreated web-0");
    assert_ne!(web0["metadata"]["uid"], old_web0);
    assert_ne!(web0["spec"]["nodeName"], "w1");

    // A drain kubectl must refuse: DaemonSet pods without --ignore-daemonsets
    // and a pod with no controller without --force. It still cordons first.
    let out = run(kubectl, &fake, &["drain", "w2", "--timeout=20s"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{who}: {stderr}");
    assert!(stderr.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/svclb-traefik-w2"), "{stderr}");
    assert!(stderr.contains("cannot delete Pods that declare no controller (use --force to override): default/scratch"), "{stderr}");
    assert_eq!(node(&fake, "w2")["spec"]["unschedulable"], true);
    assert!(pod(&fake, "scratch").is_some());

    for n in ["w1", "w2"] {
        let out = run(kubectl, &fake, &["uncordon", n]);
        assert!(out.status.success(), "{who}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), format!("node/{n} uncordoned"));
        let nd = node(&fake, n);
        assert!(
            nd["spec"].get("unschedulable").is_none() && nd["spec"].get("taints").is_none(),
            "{nd}"
        );
    }
    let out = run(kubectl, &fake, &["get", "nodes"]);
    assert!(
        node_rows(&text(&out.stdout))[1..]
            .iter()
            .all(|r| r[1] == "Ready"),
        "{}",
        text(&out.stdout)
    );

    let out = run(kubectl, &fake, &["get", "node", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "Error from server (NotFound): nodes \"nosuch\" not found"
    );
}

#[test]
fn real_kubectl_get_cordon_drain_uncordon_against_the_fake() {
    for k in kubectls() {
        check(&k);
    }
}

/// One API request with a body, as nodewarden's client sends it; the status
/// code and the JSON answer.
fn send(
    fake: &FakeKubeProcess,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let host = fake.url.trim_start_matches("http://");
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(host).expect("connect to fake-kube");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(json).unwrap_or(Value::Null))
}

/// What nodewarden writes, shown by the real kubectl: conditions in
/// `describe node`, labels in `get nodes -L`, events in `get events` with a
/// field selector; and an admin's `kubectl taint` and `uncordon` are left
/// alone by nodewarden's writes.
fn check_node_health(kubectl: &PathBuf) {
    use nodewarden::cluster::health::{Condition, Kind, NodeEvent, Status, conditions_patch};
    let fake = FakeKubeProcess::spawn(SCENARIO);
    let who = kubectl.display();
    let now = nodewarden_common::clock::now_ms();

    let out = run(
        kubectl,
        &fake,
        &["taint", "nodes", "w1", "dedicated=db:NoSchedule"],
    );
    assert!(out.status.success(), "{who} taint: {}", text(&out.stderr));
    let out = run(kubectl, &fake, &["cordon", "w1"]);
    assert!(out.status.success(), "{who} cordon: {}", text(&out.stderr));

    let uv = Condition {
        kind: Kind::UnderVoltage,
        status: Status::True,
        reason: "UnderVoltageDetected".into(),
        message:
            "under-voltage since 2026-12-03T20:14:03Z; under-voltage 14 times in the last 24 h"
                .into(),
        transition_ms: now - 60_000,
        heartbeat_ms: now,
    };
    let (code, _) = send(
        &fake,
        "PATCH",
        "/api/v1/nodes/w1/status?fieldManager=nodewarden",
        "application/strategic-merge-patch+json",
        &conditions_patch(std::slice::from_ref(&uv)),
    );
    assert_eq!(code, 200);
    let board = |value: &str| {
        let labels = serde_json::json!({"metadata": {"labels": {"nodewarden.io/board": value}}});
        send(
            &fake,
            "PATCH",
            "/api/v1/nodes/w1",
            "application/merge-patch+json",
            &labels,
        )
    };
    assert_eq!(board("raspberry-pi-4-model-b").0, 200);
    // What nodewarden's sanitising exists for: the API refuses a raw model.
    let (code, body) = board("Raspberry Pi 4 (rev 1.5)");
    assert_eq!(
        (code, body["reason"].as_str()),
        (422, Some("Invalid")),
        "{body}"
    );
    let event = NodeEvent::transition("w1", Some(Status::False), &uv).object(now, 1, "s1");
    let (code, _) = send(
        &fake,
        "POST",
        "/api/v1/namespaces/default/events",
        "application/json",
        &event,
    );
    assert_eq!(code, 201);

    let out = run(kubectl, &fake, &["describe", "node", "w1"]);
    assert!(
        out.status.success(),
        "{who} describe: {}",
        text(&out.stderr)
    );
    let d = text(&out.stdout);
    let cond = d
        .lines()
        .find(|l| l.trim_start().starts_with("UnderVoltage"))
        .unwrap_or_else(|| panic!("{who}: no UnderVoltage row in\n{d}"));
    assert!(
        cond.contains("True") && cond.contains("UnderVoltageDetected"),
        "{who}: {cond}"
    );
    assert!(
        d.lines()
            .any(|l| l.trim_start().starts_with("Ready ") && l.contains("KubeletReady")),
        "{who}: Ready lost\n{d}"
    );
    assert!(
        d.contains("dedicated=db:NoSchedule"),
        "{who}: the admin's taint\n{d}"
    );
    assert!(
        d.lines().any(|l| l.contains("Warning")
            && l.contains("UnderVoltageDetected")
            && l.contains("nodewarden")),
        "{who}: no event in\n{d}"
    );

    let out = run(
        kubectl,
        &fake,
        &["get", "nodes", "-L", "nodewarden.io/board"],
    );
    let rows = node_rows(&text(&out.stdout));
    assert_eq!(rows[0].last().unwrap(), "BOARD", "{who}");
    let w1 = rows.iter().find(|r| r[0] == "w1").unwrap();
    assert_eq!(w1.last().unwrap(), "raspberry-pi-4-model-b", "{who}");

    let events_of = |kind: &str| {
        let selector = format!("involvedObject.kind={kind}");
        run(
            kubectl,
            &fake,
            &["get", "events", "--field-selector", &selector],
        )
    };
    let out = events_of("Node");
    assert!(
        out.status.success(),
        "{who} get events: {}",
        text(&out.stderr)
    );
    let ev = text(&out.stdout);
    let header: Vec<&str> = ev.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{who}"
    );
    assert!(
        ev.lines()
            .any(|l| l.contains("UnderVoltageDetected") && l.contains("node/w1")),
        "{who}: {ev}"
    );
    let out = events_of("Pod");
    assert!(
        text(&out.stderr).contains("No resources found"),
        "{who}: {}",
        text(&out.stdout)
    );

    // The admin uncordons: the taint they set and ours stay as they are.
    let out = run(kubectl, &fake, &["uncordon", "w1"]);
    assert!(
        out.status.success(),
        "{who} uncordon: {}",
        text(&out.stderr)
    );
    let n = node(&fake, "w1");
    assert!(n["spec"]["unschedulable"].is_null(), "{who}: {n}");
    assert_eq!(
        n["spec"]["taints"],
        serde_json::json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        "{who}"
    );
    assert!(
        n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "UnderVoltage")
    );
}

#[test]
fn real_kubectl_shows_nodewardens_conditions_labels_and_events() {
    for k in kubectls() {
        check_node_health(&k);
    }
}
