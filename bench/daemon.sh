# Shared by the benchmarks: builds berth (unless BERTH is set), writes the host layer of the
# dind profiles under a temporary root (so apply has no host daemon restart to make), and starts
# a private dockerd on it in its own network namespace (as the test harness does; a second
# daemon in the machine's namespace breaks its docker0). Sourced, not run.
# shellcheck shell=bash
if [ -z "${BERTH:-}" ]; then
    cargo build --release --locked --quiet
    BERTH=$PWD/target/release/berth
fi

T=$(mktemp -d -t berth-bench-XXXXXX)
ROOT=$T/root
export DOCKER_HOST=unix://$T/docker.sock DOCKER_CONFIG=$T/cli

# shellcheck disable=SC2317  # called by the trap
cleanup() {
    if [ -f "$T/pid" ]; then
        pid=$(cat "$T/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    grep -o " ${T}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

# The host layer of the default profile, as berth writes it, so the daemon starts with it and
# the converged runs have nothing to restart.
mkdir -p "$ROOT/etc/docker" "$ROOT/proc" "$ROOT/sys/module/overlay" "$ROOT/etc/modules-load.d"
printf 'nodev\toverlay\n' >"$ROOT/proc/filesystems"
cat >"$ROOT/etc/docker/daemon.json" <<'EOF'
{
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "50m",
    "max-file": "3"
  },
  "live-restore": true
}
EOF
DOCKERD=(dockerd --data-root "$T/data" --exec-root "$T/exec" --pidfile "$T/pid"
    -H "unix://$T/docker.sock" --config-file "$ROOT/etc/docker/daemon.json")
# The unit systemd would start it from: berth reads its ExecStart flags, as on a real host.
mkdir -p "$ROOT/lib/systemd/system"
printf '[Service]\nExecStart=%s\n' "$(command -v dockerd) ${DOCKERD[*]:1}" >"$ROOT/lib/systemd/system/docker.service"
setsid unshare -n sh -c 'ip link set lo up; exec "$@"' sh "${DOCKERD[@]}" >"$T/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 600); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version >/dev/null || { cat "$T/dockerd.log"; exit 1; }
