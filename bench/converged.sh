#!/usr/bin/env bash
# Times a converged `berth apply` (nothing to do) against the floor, the same docker queries
# run alone, and a converged profile of 50 containers against one of 1. Targets: at most 1.5x
# the floor, and 50 containers at most 1.5x the time of 1.
#
# Runs against a private dockerd it starts itself, in its own network namespace (as the test
# harness does; a second daemon in the machine's namespace breaks its docker0), with stand-in
# images built from busybox-static (no registry is reached). Needs root, docker.io (dockerd and
# the CLI), busybox-static, iproute2 and util-linux.
#
#   bench/converged.sh              # builds berth --release, 30 runs of each
#   RUNS=50 BERTH=path/to/berth bench/converged.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-30}
if [ -z "${BERTH:-}" ]; then
    cargo build --release --locked --quiet
    BERTH=$PWD/target/release/berth
fi
REAL_DOCKER=$(command -v docker)

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

# The floor: exactly the docker calls a converged apply makes, captured from berth itself.
mkdir -p "$T/bin"
cat >"$T/bin/docker" <<EOF
#!/usr/bin/env bash
printf '%q ' "\$@" >>"$T/calls"
echo >>"$T/calls"
exec "$REAL_DOCKER" "\$@"
EOF
chmod +x "$T/bin/docker"
calls() { # ARRAY ARGS...: the docker calls of a converged `berth apply ARGS...`
    local -n into=$1; shift
    : >"$T/calls"
    PATH=$T/bin:$PATH berth apply "$@" >/dev/null
    # shellcheck disable=SC2034  # `into` is a nameref: this fills the caller's array
    mapfile -t into <"$T/calls"
}
# shellcheck disable=SC2317  # called through measure's eval
floor() { # ARRAY: replays those calls
    local -n replay=$1
    for call in "${replay[@]}"; do eval "\"$REAL_DOCKER\" $call" >/dev/null 2>&1 || true; done
}
calls CALLS "${DIND[@]}"

now() { date +%s%N; }
# Median wall time, in ms, of RUNS runs of each command, interleaved so that load from other
# processes falls on all of them alike.
measure() { # NAME=COMMAND...
    local -A times
    local names=()
    for spec in "$@"; do names+=("${spec%%=*}"); done
    for _ in $(seq "$RUNS"); do
        for spec in "$@"; do
            local start end
            start=$(now); eval "${spec#*=}" >/dev/null 2>&1; end=$(now)
            times[${spec%%=*}]+="$(( (end - start) / 1000 )) "
        done
    done
    for name in "${names[@]}"; do
        # shellcheck disable=SC2086
        MEDIAN[$name]=$(printf '%s\n' ${times[$name]} | sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) / 1000}')
    done
}
declare -A MEDIAN

echo "berth $("$BERTH" --version | cut -d' ' -f2), docker CLI $(docker version --format '{{.Client.Version}}'), dockerd $(docker version --format '{{.Server.Version}}'), $(nproc) cores, $RUNS runs each, medians"
echo "converged apply of the default profile makes ${#CALLS[@]} docker calls:"
printf '    docker %s\n' "${CALLS[@]}"

measure "apply=berth apply ${DIND[*]}" "floor=floor CALLS"
ratio=$(awk -v a="${MEDIAN[apply]}" -v b="${MEDIAN[floor]}" 'BEGIN {printf "%.2f", a / b}')
printf 'default profile: converged apply %6.1f ms, floor %6.1f ms: %sx (target <= 1.5x)\n' \
    "${MEDIAN[apply]}" "${MEDIAN[floor]}" "$ratio"

converge -p "$T/apps-1.toml"
converge -p "$T/apps-50.toml"
calls ONE -p "$T/apps-1.toml"
calls FIFTY -p "$T/apps-50.toml"
measure "one=berth apply -p $T/apps-1.toml" "fifty=berth apply -p $T/apps-50.toml" \
    "floor_one=floor ONE" "floor_fifty=floor FIFTY"
scale=$(awk -v a="${MEDIAN[fifty]}" -v b="${MEDIAN[one]}" 'BEGIN {printf "%.2f", a / b}')
printf 'converged apply: 50 containers %6.1f ms, 1 container %6.1f ms: %sx (target <= 1.5x)\n' \
    "${MEDIAN[fifty]}" "${MEDIAN[one]}" "$scale"
# For scale: the docker CLI alone inspects 50 containers one API request at a time.
printf '  (their floors, %s and %s docker calls: %6.1f ms and %6.1f ms: %sx)\n' \
    "${#FIFTY[@]}" "${#ONE[@]}" "${MEDIAN[floor_fifty]}" "${MEDIAN[floor_one]}" \
    "$(awk -v a="${MEDIAN[floor_fifty]}" -v b="${MEDIAN[floor_one]}" 'BEGIN {printf "%.2f", a / b}')"

fail=0
awk -v r="$ratio" 'BEGIN {exit !(r > 1.5)}' && { echo "over target: converged apply vs floor" >&2; fail=1; }
awk -v r="$scale" 'BEGIN {exit !(r > 1.5)}' && { echo "over target: 50 containers vs 1" >&2; fail=1; }
exit "$fail"
