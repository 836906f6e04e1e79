# Shared by the benchmarks: builds berth (unless BERTH is set), starts a private dockerd in its
# own network namespace (as the test harness does; a second daemon in the machine's namespace
# breaks its docker0), imports stand-in images built from busybox-static, and converges the
# default profile under a temporary root. Sourced, not run.
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
  }
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

# Stand-in images: busybox with an entrypoint that behaves like the real image.
mkdir -p "$T/rootfs/bin" "$T/rootfs/tmp" "$T/rootfs/etc" "$T/rootfs/proc" "$T/rootfs/sys" "$T/rootfs/dev"
cp "$(command -v busybox)" "$T/rootfs/bin/busybox"
for applet in sh nc sleep cat echo; do ln -s busybox "$T/rootfs/bin/$applet"; done
stand_in() { # TAG SCRIPT [docker import -c CHANGE...]
    local tag=$1 script=$2; shift 2
    local changes=()
    for change in "$@"; do changes+=(-c "$change"); done
    tar -C "$T/rootfs" -c . | docker import -c "ENTRYPOINT [\"/bin/sh\", \"-c\", \"$script\", \"stand-in\"]" \
        "${changes[@]}" - "$tag" >/dev/null
}
stand_in docker:27-dind 'trap \"exit 0\" TERM; while :; do nc -l -p 2375 -e echo hello & wait $!; done' 'VOLUME /var/lib/docker'
stand_in gitlab/gitlab-runner:v17.11.0 'trap \"exit 0\" TERM QUIT; while :; do sleep 1 & wait $!; done' 'CMD ["run"]'
stand_in berth-bench/app:1 'trap \"exit 0\" TERM; while :; do sleep 1 & wait $!; done'

printf '[containers.gitlab-dind]\nprivileged = false\n' >"$T/unprivileged.toml"
apps() { # COUNT: a profile of COUNT containers on one network, sharing one volume
    printf '[networks.berth-bench-net]\n[volumes.berth-bench-data]\n'
    for i in $(seq "$1"); do
        printf '[containers.berth-bench-%s]\nimage = "berth-bench/app:1"\nnetworks = ["berth-bench-net"]\nvolumes = ["berth-bench-data:/data"]\n' "$i"
    done
}
apps 1 >"$T/apps-1.toml"
apps 50 >"$T/apps-50.toml"

berth() { "$BERTH" -q --root "$ROOT" "$@"; }
converge() { # PROFILE ARGS...: apply, then insist that the second plan is empty
    berth apply "$@" >/dev/null
    berth plan "$@" >/dev/null || { echo "not converged: $*" >&2; exit 1; }
}
DIND=(-p dind -p "$T/unprivileged.toml")
converge "${DIND[@]}"

