#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root, no systemd) for llm_sandbox's container backends.
#
# Idempotent: installs docker.io, podman, runc, runsc, debootstrap and curl only when missing,
# plus docker-registry and apache2-utils (htpasswd) for the pull tests, which start a registry
# of their own on loopback; registers gVisor (runsc) with Docker, configures rootful Podman, and
# makes sure dockerd and the Podman REST service are answering. A second run on a prepared
# machine is a fast no-op.
# One line of output per step; exits non-zero with a message when something cannot be set up.
#
# Environment overrides:
#   ENGINES_WAIT_SECONDS   how long to wait for each daemon to answer (default 60)
#   PODMAN_SOCKET          Podman API socket path (default /run/podman/podman.sock)
set -euo pipefail

WAIT_SECONDS="${ENGINES_WAIT_SECONDS:-60}"
PODMAN_SOCKET="${PODMAN_SOCKET:-/run/podman/podman.sock}"
PODMAN_PIDFILE="$(dirname "$PODMAN_SOCKET")/llm-sandbox-podman-service.pid"
DOCKER_DAEMON_JSON=/etc/docker/daemon.json
CONTAINERS_CONF=/etc/containers/containers.conf
DOCKERD_LOG=/var/log/dockerd.log
PODMAN_LOG=/var/log/podman-service.log
PACKAGES=(docker.io podman catatonit runc runsc debootstrap curl docker-registry apache2-utils)

step() { printf '[engines] %s\n' "$*"; }
die() { printf '[engines] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (installs packages, starts daemons)"
    command -v python3 >/dev/null || die "python3 is required (used to merge config files)"
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        step "packages: ${PACKAGES[*]} already installed"
        return
    fi
    step "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# Merge the runsc runtime into daemon.json, keeping every other key. Prints "changed"/"unchanged".
merge_daemon_json() {
    local runsc_path
    runsc_path="$(command -v runsc)" || die "runsc not found after installation"
    mkdir -p "$(dirname "$DOCKER_DAEMON_JSON")"
    python3 - "$DOCKER_DAEMON_JSON" "$runsc_path" <<'PY'
import json, os, sys

path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
except FileNotFoundError:
    config = {}
except json.JSONDecodeError as exc:
    sys.exit(f"{path} is not valid JSON: {exc}")
if not isinstance(config, dict):
    sys.exit(f"{path} must hold a JSON object")
wanted = {"path": runsc, "runtimeArgs": ["--network=none"]}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") == wanted:
    print("unchanged")
    sys.exit(0)
runtimes["runsc"] = wanted
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as fh:
    json.dump(config, fh, indent=2, sort_keys=True)
    fh.write("\n")
os.replace(tmp, path)
print("changed")
PY
}

docker_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

docker_has_runsc() {
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

# wait_for DESCRIPTION PID-OR-EMPTY LOG COMMAND...: poll COMMAND until it succeeds or time runs out.
wait_for() {
    local what="$1" pid="$2" log="$3" deadline=$((SECONDS + WAIT_SECONDS))
    shift 3
    until "$@"; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$what exited during start-up (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$log" >&2 || true
            die "$what did not answer within ${WAIT_SECONDS}s (log: $log)"
        fi
        sleep 0.5
    done
}

start_docker() {
    local config_state="$1" pid
    if docker_answers; then
        if [[ "$config_state" == changed ]] || ! docker_has_runsc; then
            pid="$(cat /var/run/docker.pid 2>/dev/null)" || die "dockerd runs but has no pid file"
            kill -HUP "$pid"
            wait_for "dockerd config reload" "" "$DOCKERD_LOG" docker_has_runsc
            step "dockerd: already running, reloaded daemon.json"
        else
            step "dockerd: already running"
        fi
        return
    fi
    command -v dockerd >/dev/null || die "dockerd not found"
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
    wait_for dockerd "$pid" "$DOCKERD_LOG" docker_answers
    docker_has_runsc || die "dockerd started but does not list the runsc runtime"
    step "dockerd: started (pid $pid, log $DOCKERD_LOG)"
}

# Hard limit of ulimit option $1 as a number ("unlimited" becomes $2).
hard_limit() {
    local value
    value="$(ulimit -H "$1")"
    [[ "$value" == unlimited ]] && value="$2"
    printf '%s' "$value"
}

# Set runtime and default_ulimits in containers.conf, keeping every other line.
# Podman lowers its own RLIMIT_NPROC to kernel.pid_max at start-up, and without
# CAP_SYS_RESOURCE runc cannot give a container more than podman has: cap nproc there too.
# Prints "changed"/"unchanged".
merge_containers_conf() {
    local nofile nproc pid_max
    nofile="$(hard_limit -n "$(cat /proc/sys/fs/nr_open)")"
    pid_max="$(cat /proc/sys/kernel/pid_max)"
    nproc="$(hard_limit -u "$pid_max")"
    ((nproc <= pid_max)) || nproc="$pid_max"
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    python3 - "$CONTAINERS_CONF" "nofile=$nofile:$nofile" "nproc=$nproc:$nproc" <<'PY'
import json, os, re, sys

path, ulimits = sys.argv[1], sys.argv[2:]
settings = {
    "containers": {"default_ulimits": json.dumps(ulimits)},
    "engine": {"runtime": json.dumps("runc")},
}
try:
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
except FileNotFoundError:
    lines = ["# Written by llm_sandbox scripts/engines.sh; other settings are kept on re-runs."]

def table_bounds(name):
    header = re.compile(r"^\s*\[\s*" + re.escape(name) + r"\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        lines.extend(["", f"[{name}]"])
        return len(lines), len(lines)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    return start + 1, end

def set_key(table, key, value):
    start, end = table_bounds(table)
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start, end):
        if pattern.match(lines[i]):
            stop = i + 1
            if lines[i].split("=", 1)[1].strip().startswith("[") and "]" not in lines[i]:
                while stop < end and "]" not in lines[stop - 1]:
                    stop += 1
            lines[i:stop] = [f"{key} = {value}"]
            return
    lines.insert(end, f"{key} = {value}")

old = "\n".join(lines)
for table, keys in settings.items():
    for key, value in keys.items():
        set_key(table, key, value)
new = "\n".join(lines)
if new == old and os.path.exists(path):
    print("unchanged")
    sys.exit(0)
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as fh:
    fh.write(new + "\n")
os.replace(tmp, path)
print("changed")
PY
}

podman_answers() {
    [[ -S "$PODMAN_SOCKET" ]] || return 1
    [[ "$(curl -s --max-time 3 --unix-socket "$PODMAN_SOCKET" http://d/_ping 2>/dev/null)" == OK ]]
}

# Stop a Podman service that an earlier run of this script started (tracked by our pid file).
stop_our_podman_service() {
    local pid
    pid="$(cat "$PODMAN_PIDFILE" 2>/dev/null)" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == podman ]] || return 1
    kill "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
}

start_podman() {
    local config_state="$1" pid
    if podman_answers; then
        if [[ "$config_state" != changed ]]; then
            step "podman service: already answering on $PODMAN_SOCKET"
            return
        fi
        stop_our_podman_service || {
            step "podman service: answering, but started elsewhere; restart it to load $CONTAINERS_CONF"
            return
        }
    fi
    mkdir -p "$(dirname "$PODMAN_SOCKET")"
    rm -f "$PODMAN_SOCKET"
    setsid nohup podman system service --time=0 "unix://$PODMAN_SOCKET" \
        >"$PODMAN_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PODMAN_PIDFILE"
    wait_for "podman system service" "$pid" "$PODMAN_LOG" podman_answers
    step "podman service: started (pid $pid, socket $PODMAN_SOCKET, log $PODMAN_LOG)"
}

main() {
    local state
    require_root
    install_packages
    state="$(merge_daemon_json)" || die "could not update $DOCKER_DAEMON_JSON"
    step "docker daemon.json: runsc runtime (--network=none) $state"
    start_docker "$state"
    state="$(merge_containers_conf)" || die "could not update $CONTAINERS_CONF"
    step "podman containers.conf: runtime=runc, default_ulimits within hard limits, $state"
    podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null | grep -qx runc \
        || die "podman does not accept $CONTAINERS_CONF (try: podman info)"
    start_podman "$state"
    step "ready: docker $(docker info --format '{{.ServerVersion}}'), $(podman --version)"
}

main "$@"
