#!/usr/bin/env bash
# Times a converged `berth apply` (nothing to do) against the floor, the same docker queries
# run one after another, and a converged profile of 50 containers against one of 1. Targets:
# at most 0.8x the sequential floor (berth asks them side by side), and 50 containers at most
# 1.5x the time of 1.
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
# shellcheck source=bench/lib.sh
source bench/lib.sh
REAL_DOCKER=$(command -v docker)

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
printf 'default profile: converged apply %6.1f ms, sequential floor %6.1f ms: %sx (target <= 0.8x)\n' \
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
awk -v r="$ratio" 'BEGIN {exit !(r > 0.8)}' && { echo "over target: converged apply vs floor" >&2; fail=1; }
awk -v r="$scale" 'BEGIN {exit !(r > 1.5)}' && { echo "over target: 50 containers vs 1" >&2; fail=1; }
exit "$fail"
