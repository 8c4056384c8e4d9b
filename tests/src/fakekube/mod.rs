//! A fake Kubernetes API server that follows the real one's documented
//! behaviour where nodewarden and kubectl depend on it: nodes (get, list,
//! strategic-merge / merge / JSON patch, the status subresource), pods (list
//! by field selector with paging, get, delete), core/v1 Events (create,
//! list), RBAC denials set by the test (403), the Eviction subresource with PodDisruptionBudgets,
//! a simulated kubelet that finishes terminating pods after their grace
//! period, and StatefulSet / ReplicaSet recreation. What it leaves out is in
//! docs/testing-kubernetes.md.
//!
//! In a test: `FakeKube::start(scenario).await`; as a process: the
//! `fake-kube` binary, controlled over `/fake/*` endpoints.

mod api;
pub mod patch;
mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use state::State;
pub use state::{LoggedRequest, NodeSpec, PdbSpec, PodSpec, Reachability, Scenario};

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    kubeconfig: PathBuf,
    _dir: Option<tempfile::TempDir>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A kubeconfig pointing at `url` with a bearer token, as k3s writes one.
pub fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    )
}

impl FakeKube {
    /// Starts on a free loopback port, with a kubeconfig in a temporary directory.
    pub async fn start(scenario: Scenario) -> FakeKube {
        FakeKube::start_at(scenario, 0, None)
            .await
            .expect("start fake kube")
    }

    /// Starts from a scenario given as JSON text.
    pub async fn start_json(scenario: &str) -> FakeKube {
        let s: Scenario = serde_json::from_str(scenario).expect("scenario JSON");
        FakeKube::start(s).await
    }

    /// Starts on `port` (0 = any free one) and writes the kubeconfig to
    /// `kubeconfig` (or a temporary directory).
    pub async fn start_at(
        scenario: Scenario,
        port: u16,
        kubeconfig: Option<PathBuf>,
    ) -> std::io::Result<FakeKube> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (dir, path) = match kubeconfig {
            Some(p) => (None, p),
            None => {
                let d = tempfile::tempdir()?;
                let p = d.path().join("kubeconfig.yaml");
                (Some(d), p)
            }
        };
        std::fs::write(&path, kubeconfig_text(&format!("http://{addr}")))?;
        let state = Arc::new(Mutex::new(State::new(&scenario)));
        let server = tokio::spawn(serve(listener, state.clone(), addr));
        let kubelet = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    lock(&state).tick();
                }
            })
        };
        Ok(FakeKube {
            addr,
            state,
            kubeconfig: path,
            _dir: dir,
            tasks: vec![server, kubelet],
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig file that points at this server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Makes the API answer normally, with 503, or not at all.
    pub fn set_reachability(&self, r: Reachability) {
        lock(&self.state).reachability = r;
    }

    /// Changes a PDB's minAvailable (e.g. to 0 to let evictions through).
    pub fn set_pdb_min_available(&self, namespace: &str, name: &str, min_available: i64) {
        set_pdb(&self.state, namespace, name, min_available);
    }

    /// Makes evictions of one pod fail with `code` (None = stop failing).
    pub fn fail_eviction(&self, namespace: &str, name: &str, code: Option<u16>) {
        let mut st = lock(&self.state);
        let key = (namespace.to_string(), name.to_string());
        match code {
            Some(c) => st.fail_eviction.insert(key, c),
            None => st.fail_eviction.remove(&key),
        };
    }

    /// Makes a pod never finish terminating (or lets it finish again).
    pub fn set_stuck(&self, namespace: &str, name: &str, stuck: bool) {
        if let Some(e) = lock(&self.state)
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            e.stuck = stuck;
        }
    }

    /// Removes a pod's finalizers, as their controller would: a pod already
    /// deleted and done terminating is then gone.
    pub fn clear_finalizers(&self, namespace: &str, name: &str) -> bool {
        clear_finalizers(&self.state, namespace, name)
    }

    /// A node object as the API would return it.
    pub fn node(&self, name: &str) -> Option<Value> {
        lock(&self.state).nodes.get(name).cloned()
    }

    /// A pod object as the API would return it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut st = lock(&self.state);
        st.tick();
        st.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.obj.clone())
    }

    /// Every pod bound to `node`.
    pub fn pods_on(&self, node: &str) -> Vec<Value> {
        let mut st = lock(&self.state);
        st.tick();
        st.pods
            .values()
            .filter(|e| e.obj["spec"]["nodeName"] == node)
            .map(|e| e.obj.clone())
            .collect()
    }

    /// Makes RBAC refuse (`deny`) or allow again a verb on a resource, e.g.
    /// `("patch", "nodes/status", true)`.
    pub fn set_denied(&self, verb: &str, resource: &str, deny: bool) {
        set_denied(&self.state, verb, resource, deny);
    }

    /// The next `n` node writes answer 409 Conflict.
    pub fn inject_conflicts(&self, n: u32) {
        lock(&self.state).conflicts = n;
    }

    /// Every Event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let mut v: Vec<Value> = lock(&self.state).events.values().cloned().collect();
        v.sort_by_key(|e| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
        });
        v
    }

    /// Applies `patch` (a JSON merge patch) to a node as an admin's kubectl
    /// would (bumping its resourceVersion).
    pub fn merge_node(&self, name: &str, patch: &Value) {
        let mut st = lock(&self.state);
        let rv = st.next_rv();
        if let Some(n) = st.nodes.get_mut(name) {
            patch::merge_patch(n, patch);
            n["metadata"]["resourceVersion"] = json!(rv);
            state::sync_unschedulable_taint(n);
        }
    }

    /// Every API request received so far (control requests excluded).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state).log.clone()
    }
}

fn set_pdb(state: &Arc<Mutex<State>>, namespace: &str, name: &str, min_available: i64) -> bool {
    let mut st = lock(state);
    let rv = st.next_rv();
    match st.pdbs.get_mut(&(namespace.to_string(), name.to_string())) {
        Some(p) => {
            p["spec"]["minAvailable"] = json!(min_available);
            if let Some(s) = p["spec"].as_object_mut() {
                s.remove("maxUnavailable");
            }
            p["metadata"]["resourceVersion"] = json!(rv);
            let g = p["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            p["metadata"]["generation"] = json!(g);
            true
        }
        None => false,
    }
}

fn set_denied(state: &Arc<Mutex<State>>, verb: &str, resource: &str, deny: bool) {
    let key = (verb.to_string(), resource.to_string());
    let mut st = lock(state);
    if deny {
        st.deny.insert(key);
    } else {
        st.deny.remove(&key);
    }
}

fn clear_finalizers(state: &Arc<Mutex<State>>, namespace: &str, name: &str) -> bool {
    let mut st = lock(state);
    let rv = st.next_rv();
    let Some(e) = st.pods.get_mut(&(namespace.to_string(), name.to_string())) else {
        return false;
    };
    if let Some(m) = e.obj["metadata"].as_object_mut() {
        m.remove("finalizers");
    }
    e.obj["metadata"]["resourceVersion"] = serde_json::json!(rv);
    st.tick();
    true
}

fn lock(state: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, addr, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn response(code: u16, body: &Value) -> hyper::Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    hyper::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("audit-id", "fake")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

async fn answer(
    state: &Arc<Mutex<State>>,
    addr: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (content_type, accept, user_agent) = (
        header("content-type"),
        header("accept"),
        header("user-agent"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/fake/") {
        let (code, v) = control(state, &method, rest, &query);
        return response(code, &v);
    }
    let r = api::Req {
        method: &method,
        path: &path,
        query: &query,
        content_type: &content_type,
        accept: &accept,
        body: &body,
    };
    match api::reachability(state) {
        Reachability::Up => {}
        Reachability::Unavailable => {
            api::log(state, &r, &user_agent, 503);
            let s = api::status(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request".into(),
                None,
            );
            return response(503, &s.body);
        }
        Reachability::Hang => {
            api::log(state, &r, &user_agent, 0);
            std::future::pending::<()>().await;
        }
    }
    let reply = api::handle(state, &addr.to_string(), &r);
    api::log(state, &r, &user_agent, reply.code);
    response(reply.code, &reply.body)
}

fn control(state: &Arc<Mutex<State>>, method: &str, what: &str, query: &str) -> (u16, Value) {
    let q: std::collections::BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let ns = q.get("namespace").copied().unwrap_or("default");
    let name = q.get("name").copied().unwrap_or("");
    match (method, what) {
        ("GET", "requests") => (
            200,
            serde_json::to_value(&lock(state).log).unwrap_or_default(),
        ),
        ("GET", "state") => {
            let mut st = lock(state);
            st.tick();
            let pods: Vec<Value> = st.pods.values().map(|e| e.obj.clone()).collect();
            let nodes: Vec<Value> = st.nodes.values().cloned().collect();
            let events: Vec<Value> = st.events.values().cloned().collect();
            (200, json!({"nodes": nodes, "pods": pods, "events": events}))
        }
        ("POST", "reachability") => {
            let r = match q.get("mode").copied() {
                Some("up") => Reachability::Up,
                Some("unavailable") => Reachability::Unavailable,
                Some("hang") => Reachability::Hang,
                other => {
                    return (
                        400,
                        json!({"error": format!("mode must be up, unavailable or hang, not {other:?}")}),
                    );
                }
            };
            lock(state).reachability = r;
            (200, json!({"ok": true}))
        }
        ("POST", "pdb") => match q.get("minAvailable").and_then(|m| m.parse().ok()) {
            Some(m) if set_pdb(state, ns, name, m) => (200, json!({"ok": true})),
            Some(_) => (404, json!({"error": format!("no PDB {ns}/{name}")})),
            None => (400, json!({"error": "minAvailable=N required"})),
        },
        ("POST", "fail-eviction") => {
            let code: u16 = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(0);
            let mut st = lock(state);
            let key = (ns.to_string(), name.to_string());
            if code == 0 {
                st.fail_eviction.remove(&key);
            } else {
                st.fail_eviction.insert(key, code);
            }
            (200, json!({"ok": true}))
        }
        ("POST", "stuck") => {
            let stuck = q.get("stuck").copied() != Some("false");
            match lock(state)
                .pods
                .get_mut(&(ns.to_string(), name.to_string()))
            {
                Some(e) => {
                    e.stuck = stuck;
                    (200, json!({"ok": true}))
                }
                None => (404, json!({"error": format!("no pod {ns}/{name}")})),
            }
        }
        ("POST", "deny") => {
            let (Some(verb), Some(resource)) = (q.get("verb"), q.get("resource")) else {
                return (400, json!({"error": "verb=V&resource=R required"}));
            };
            let resource = resource.replace("%2F", "/");
            set_denied(
                state,
                verb,
                &resource,
                q.get("allow").copied() != Some("true"),
            );
            (200, json!({"ok": true}))
        }
        ("POST", "conflicts") => {
            lock(state).conflicts = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
            (200, json!({"ok": true}))
        }
        ("POST", "clear-finalizers") => match clear_finalizers(state, ns, name) {
            true => (200, json!({"ok": true})),
            false => (404, json!({"error": format!("no pod {ns}/{name}")})),
        },
        _ => (
            404,
            json!({"error": format!("unknown control endpoint {method} /fake/{what}")}),
        ),
    }
}

/// The `fake-kube` binary run as a separate process (for kubectl and demos).
pub struct FakeKubeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeKubeProcess {
    /// Starts `fake-kube` (built next to the test executable) on `scenario` JSON.
    pub fn spawn(scenario: &str) -> FakeKubeProcess {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario_path = dir.path().join("scenario.json");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        std::fs::write(&scenario_path, scenario).expect("write scenario");
        let mut child = std::process::Command::new(crate::bin("fake-kube"))
            .arg("--scenario")
            .arg(&scenario_path)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn fake-kube");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read url line");
        let url = line
            .trim()
            .strip_prefix("url ")
            .expect("fake-kube prints `url ...` first")
            .to_string();
        FakeKubeProcess {
            child,
            url,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Sends a control request, e.g. `("POST", "/fake/pdb?namespace=default&name=web&minAvailable=1")`.
    pub fn control(&self, method: &str, path_and_query: &str) -> Value {
        use std::io::{Read, Write};
        let host = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).expect("connect to fake-kube");
        write!(s, "{method} {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

impl Drop for FakeKubeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
