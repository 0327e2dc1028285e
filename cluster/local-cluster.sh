#!/usr/bin/env bash
# A two-node Ray cluster on loopback (a head and a worker node on this machine), to try the
# cluster path of rayprune (`--address`, `ray job submit`, several nodes) without a cloud.
#
#   cluster/local-cluster.sh start     # head + worker node, token authentication on
#   cluster/local-cluster.sh status    # `ray status` of that cluster
#   cluster/local-cluster.sh env       # the exports a client needs (eval "$(... env)")
#   cluster/local-cluster.sh stop      # kill this cluster's processes, and only those
#
# Everything lives under one state folder ($RAYPRUNE_LOCAL_CLUSTER, default
# /tmp/rayprune-local-cluster-$USER): both nodes' --temp-dir, the cluster's token and the ports.
# `stop` kills exactly the processes whose command line names that folder (and the head's Ray client
# server, found by this cluster's GCS port), and their descendants; it never runs
# `ray stop`, which would kill every Ray process on the machine (other users' clusters too).
#
# Settings (environment): RAYPRUNE_LOCAL_CLUSTER (state folder), HEAD_CPUS (default 1),
# WORKER_CPUS (default 1), WORKER_GPUS (default 0), GCS_PORT / DASHBOARD_PORT (default: free ports).
# Every port is chosen free on 127.0.0.1 unless given, so several such clusters can coexist.
set -euo pipefail

STATE="${RAYPRUNE_LOCAL_CLUSTER:-/tmp/rayprune-local-cluster-${USER:-$(id -un)}}"
HEAD_CPUS="${HEAD_CPUS:-1}"
WORKER_CPUS="${WORKER_CPUS:-1}"
WORKER_GPUS="${WORKER_GPUS:-0}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"

die() { echo "local-cluster: $*" >&2; exit 1; }

free_ports() {  # free_ports N -> N distinct free TCP ports on 127.0.0.1
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# pids of the processes whose command line mentions the state folder (this cluster's processes:
# GCS, raylets, dashboard, monitors) or, for the head's Ray client server (started by `ray start`,
# which exits: it is re-parented and names neither the folder nor a parent of ours), this cluster's
# GCS port; then all their descendants (workers and agents rename themselves to `ray::...` and no
# longer show the folder)
own_pids() {
    local gcs="" cport=""
    if [ -f "$STATE/ports" ]; then
        gcs="$(sed -n 's/^GCS_PORT=//p' "$STATE/ports")"
        cport="$(sed -n 's/^CLIENT_PORT=//p' "$STATE/ports")"
    fi
    "$PYTHON" - "$STATE/" "$$" "$gcs" "$cport" <<'EOF'
import os, re, sys
state, me, gcs, cport = sys.argv[1], {sys.argv[2], str(os.getpid()), str(os.getppid())}, sys.argv[3], sys.argv[4]
# this cluster's GCS address and the client port it was started with (another cluster reusing the port later
# would have to reuse both)
client = re.compile(r"ray\.util\.client\.server .*--address=[^ ]*:" + re.escape(gcs) + r"( |$)") if gcs else None
client_port = re.compile(r"--port=" + re.escape(cport) + r"( |$)") if cport else None
roots, children = [], {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        continue
    children.setdefault(ppid, []).append(pid)
    ours = state in cmd or (client is not None and client.search(cmd) is not None
                            and (client_port is None or client_port.search(cmd) is not None))
    if ours and "local-cluster.sh" not in cmd and pid not in me:
        roots.append(pid)
seen, todo = set(), roots
while todo:
    pid = todo.pop()
    if pid not in seen:
        seen.add(pid)
        todo.extend(children.get(pid, []))
print("\n".join(sorted(seen, key=int)))
EOF
}

client_env() {
    # shellcheck source=/dev/null
    . "$STATE/ports"
    cat <<EOF
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$STATE/auth_token
export RAYPRUNE_ADDRESS=127.0.0.1:$GCS_PORT
export RAY_DASHBOARD_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
EOF
}

start() {
    if [ -n "$(own_pids)" ]; then
        die "a cluster is already running from $STATE (stop it first: $0 stop)"
    fi
    command -v ray >/dev/null || die "'ray' is not on PATH (pip install -e . installs it)"
    # Ray puts unix sockets under the temp dirs; their paths must stay under ~107 characters.
    [ "${#STATE}" -le 60 ] || die "state folder path too long for Ray's sockets (${#STATE} > 60 chars): $STATE"
    rm -rf "$STATE"
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    # The cluster's own token (not ~/.ray/auth_token): every node and every client reads it
    # through RAY_AUTH_TOKEN_PATH.
    (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$STATE/auth_token")

    local p
    read -r -a p <<< "$(free_ports 13)"
    GCS_PORT="${GCS_PORT:-${p[0]}}"
    DASHBOARD_PORT="${DASHBOARD_PORT:-${p[1]}}"
    cat > "$STATE/ports" <<EOF
GCS_PORT=$GCS_PORT
DASHBOARD_PORT=$DASHBOARD_PORT
CLIENT_PORT=${p[2]}
EOF
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE/auth_token"

    echo "Starting the head node (GCS 127.0.0.1:$GCS_PORT, dashboard http://127.0.0.1:$DASHBOARD_PORT) ..."
    ray start --head --node-ip-address=127.0.0.1 --port="$GCS_PORT" \
        --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
        --ray-client-server-port="${p[2]}" --node-manager-port="${p[3]}" --object-manager-port="${p[4]}" \
        --dashboard-agent-listen-port="${p[5]}" --dashboard-agent-grpc-port="${p[6]}" \
        --metrics-export-port="${p[7]}" --temp-dir="$STATE/head" \
        --num-cpus="$HEAD_CPUS" --num-gpus=0 --disable-usage-stats > "$STATE/head-start.log" 2>&1 \
        || { cat "$STATE/head-start.log" >&2; stop >/dev/null; die "the head node did not start"; }

    echo "Starting a worker node (${WORKER_CPUS} CPU, ${WORKER_GPUS} GPU) ..."
    ray start --address="127.0.0.1:$GCS_PORT" --node-ip-address=127.0.0.1 \
        --node-manager-port="${p[8]}" --object-manager-port="${p[9]}" \
        --dashboard-agent-listen-port="${p[10]}" --dashboard-agent-grpc-port="${p[11]}" \
        --metrics-export-port="${p[12]}" --temp-dir="$STATE/worker" \
        --num-cpus="$WORKER_CPUS" --num-gpus="$WORKER_GPUS" --disable-usage-stats > "$STATE/worker-start.log" 2>&1 \
        || { cat "$STATE/worker-start.log" >&2; stop >/dev/null; die "the worker node did not start"; }

    wait_for_nodes 2 60 || { status >&2 || true; die "the cluster did not reach 2 nodes"; }
    echo
    echo "Ray cluster on loopback: 2 nodes, token authentication on. State: $STATE"
    echo
    echo "Point rayprune at it:"
    echo "  eval \"\$($0 env)\""
    echo "  rayprune sweep configs/quickstart.yaml --address \$RAYPRUNE_ADDRESS --out runs/local-cluster"
    echo "or submit the sweep as a Ray job (the job server uploads the current directory):"
    echo "  rayprune submit configs/quickstart.yaml --address \$RAY_DASHBOARD_ADDRESS --out \$PWD/runs/local-cluster-job"
    echo "Dashboard: http://127.0.0.1:$DASHBOARD_PORT (paste the token from $STATE/auth_token when asked)"
    echo "Stop it:   $0 stop"
}

alive_nodes() {  # number of alive nodes, as the GCS sees them
    "$PYTHON" - "127.0.0.1:$GCS_PORT" <<'EOF' 2>/dev/null
import sys
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
}

wait_for_nodes() {  # wait_for_nodes N TIMEOUT_S
    local deadline=$((SECONDS + $2)) n
    while [ "$SECONDS" -lt "$deadline" ]; do
        n="$(alive_nodes || echo 0)"
        [ "${n:-0}" -ge "$1" ] && return 0
        sleep 1
    done
    return 1
}

status() {
    if [ ! -f "$STATE/ports" ] || [ -z "$(own_pids)" ]; then
        echo "no local cluster running from $STATE"
        return 1
    fi
    # shellcheck source=/dev/null
    . "$STATE/ports"
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE/auth_token" ray status --address "127.0.0.1:$GCS_PORT"
}

stop() {
    local pids left
    pids="$(own_pids)"
    if [ -z "$pids" ]; then
        echo "no processes of a local cluster from $STATE"
    else
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 1 20); do
            left="$(own_pids)"
            [ -z "$left" ] && break
            sleep 0.5
        done
        # what is left: still in the tree, or orphaned by a parent that already exited
        left="$(own_pids; for pid in $pids; do if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi; done)"
        # shellcheck disable=SC2086
        [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
        sleep 0.5
        [ -z "$(own_pids)" ] || die "processes left: $(own_pids | tr '\n' ' ')"
        echo "stopped the local cluster from $STATE ($(echo "$pids" | wc -w) processes)"
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) [ -f "$STATE/ports" ] || die "no local cluster from $STATE"; client_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
