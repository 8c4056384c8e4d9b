#!/usr/bin/env bash
# The local demo: a collector, an agent for this machine and a simulated
# Megatec UPS on a pseudo-terminal, all on embedded defaults in a temp dir.
# Ctrl-C stops everything and removes the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "demo: needs Rust 1.95 or newer (cargo). Install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
    echo "demo: installing a C linker (build-essential)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y build-essential >/dev/null; else sudo apt-get install -y build-essential >/dev/null; fi
fi

echo "demo: building nodewarden (first time takes a few minutes)..."
cargo build --quiet -p nodewarden -p nodewarden-agent -p nodewarden-tests --bins --features nodewarden-agent/simulator
bin="$PWD/target/debug"

link_port="${NODEWARDEN_DEMO_PORT:-7150}"
metrics_port="${NODEWARDEN_DEMO_METRICS_PORT:-7151}"
dir="$(mktemp -d /tmp/nodewarden-demo.XXXXXX)"
pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    # Agent first so its last samples reach the collector, then the rest.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup INT TERM EXIT

node="$(hostname | tr 'A-Z_' 'a-z-')"

# A stand-in Kubernetes API (the fake the tests use, tests/src/fakekube):
# this machine as the one k3s server, with a few pods to drain.
cat > "$dir/cluster.json" <<JSON
{
  "time_factor": 0.2,
  "nodes": [{"name": "$node", "role": "server"}],
  "pods": [
    {"namespace": "default", "name": "web-0", "node": "$node", "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 10},
    {"namespace": "kube-system", "name": "svclb-traefik-x1", "node": "$node", "owner_kind": "DaemonSet", "owner_name": "svclb-traefik"}
  ],
  "pdbs": [{"namespace": "default", "name": "web", "selector": {"app": "web"}, "min_available": 0}]
}
JSON
"$bin/fake-kube" --scenario "$dir/cluster.json" --kubeconfig "$dir/kubeconfig" > "$dir/fake-kube.log" 2>&1 &
pids=($! "${pids[@]}")
for _ in $(seq 50); do [ -s "$dir/kubeconfig" ] && break; sleep 0.1; done

cat > "$dir/collector.toml" <<TOML
listen = "127.0.0.1:$link_port"
admin_socket = "$dir/admin.sock"
metrics_listen = "127.0.0.1:$metrics_port"
data_dir = "$dir/data"
commit_interval = "1s"

[kubernetes]
kubeconfig = "$dir/kubeconfig"

[power]
# Armed from the file for the demo; a real install observes until
# `nodewarden power arm`.
armed = true
# Short, so the demo shows the whole sequence within a minute of pulling the plug.
collector_node = "$node"
grace = "15s"
drain_timeout = "20s"
min_runtime = "0s"
agent_confirm_timeout = "5s"
halt_time = "5s"
ups_off_delay = "30s"
ups_restore_delay = "1m"
mains_stable = "10s"
TOML
# The demo must never power this machine off: the agent's poweroff action is
# a line in a log instead of systemd's poweroff.
cat > "$dir/agent.toml" <<TOML
node_name = "$node"
state_dir = "$dir/agent-state"
sample_interval = "2s"

[commands]
poweroff = ["/bin/sh", "-c", "echo \"\$(date +%T) poweroff (demo: not really) \$NODEWARDEN_REASON\" >> $dir/poweroff.log"]
state_dir = "$dir/agent-run"

[[ups]]
name = "demo-ups"
protocol = "megatec"
port = "$dir/ups0"
poll_interval = "1s"
TOML

"$bin/nodewarden-agent" ups simulate --protocol megatec --path "$dir/ups0" --load 35 > "$dir/ups.log" 2>&1 &
pids=($! "${pids[@]}")
for _ in $(seq 50); do [ -e "$dir/ups0.ctl" ] && break; sleep 0.1; done

# k3s-style trust: init makes the CA and a join token; the agent joins with it
# (and join writes `collector = "https://..."` into agent.toml).
token="$("$bin/nodewarden" init --config "$dir/collector.toml" | grep '^NW1::')"
"$bin/nodewarden" serve --config "$dir/collector.toml" > "$dir/collector.log" 2>&1 &
pids=($! "${pids[@]}")
for _ in $(seq 100); do [ -S "$dir/admin.sock" ] && break; sleep 0.1; done
if [ ! -S "$dir/admin.sock" ]; then
    echo "demo: the collector did not start:" >&2; cat "$dir/collector.log" >&2; exit 1
fi

"$bin/nodewarden-agent" --config "$dir/agent.toml" join "127.0.0.1:$link_port" "$token"
"$bin/nodewarden-agent" --config "$dir/agent.toml" > "$dir/agent.log" 2>&1 &
pids=($! "${pids[@]}")
sleep 5

nw="$bin/nodewarden --socket $dir/admin.sock"
$nw nodes || true
echo
$nw ups || true
cat <<TEXT

nodewarden demo running (data in $dir). Try, in another terminal:

  $nw nodes
  $nw node $node
  $nw history $node cpu_temp --since 10m
  $nw events
  $nw ups demo-ups
  curl -s http://127.0.0.1:$metrics_port/metrics | grep -E 'nodewarden_(cpu|ups)'
  open http://127.0.0.1:$metrics_port/ in a browser: the live status page

The power-loss sequence (against a stand-in Kubernetes API; the poweroff
action only writes $dir/poweroff.log):

  $nw plan                     # what a power cut now would do
  $nw drill                    # rehearse it: every destructive step reported
  $bin/nodewarden-agent ups control $dir/ups0.ctl mains off   # pull the plug
  $nw power                    # after the 15 s grace: cordon, drain, poweroff, UPS cycle
  $bin/nodewarden-agent ups control $dir/ups0.ctl mains on    # mains back

Logs: $dir/collector.log  $dir/agent.log  $dir/ups.log  $dir/fake-kube.log  $dir/poweroff.log
Ctrl-C stops the demo.
TEXT
wait
