#!/usr/bin/env bash
# Heal latency of `berth watch`: from `docker rm -f gitlab-runner` (what a job can do through
# the socket) to the runner running again, median of RUNS, beside the floor, the time `docker
# run -d` of the same image alone takes to a running container, measured the same way in the
# same run. Targets: at most 1 s, and at most 1.3x the floor.
#
# The same private dockerd and stand-in images as bench/converged.sh (bench/lib.sh). Needs root,
# docker.io, busybox-static, iproute2 and util-linux.
#
#   bench/heal.sh                   # builds berth --release, 10 runs
#   RUNS=20 BERTH=path/to/berth bench/heal.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
# shellcheck source=bench/lib.sh
source bench/lib.sh

now() { date +%s%N; }
running() { [ "$(docker container inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
wait_running() { # NAME: polls until it runs (at most 30 s)
    for _ in $(seq 3000); do running "$1" && return 0; sleep 0.01; done
    echo "$1 never ran" >&2; cat "$T/watch.log" >&2; exit 1
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) / 1000}'; }

# Ten heals in half a minute would trip the crash-loop limit: this measures latency.
"$BERTH" -q --root "$ROOT" watch --heals-per-minute 1000 "${DIND[@]}" >"$T/watch.log" 2>&1 &
watch=$!
# shellcheck disable=SC2317  # called by the trap
stop_watch() { kill "$watch" 2>/dev/null || true; wait "$watch" 2>/dev/null || true; cleanup; }
trap stop_watch EXIT
for _ in $(seq 600); do [ -f "$ROOT/var/lib/berth/watch.json" ] && break; sleep 0.1; done
[ -f "$ROOT/var/lib/berth/watch.json" ] || { cat "$T/watch.log"; exit 1; }
sleep 1

heals=() floors=()
for _ in $(seq "$RUNS"); do
    start=$(now)
    docker rm --force gitlab-runner >/dev/null
    wait_running gitlab-runner
    heals+=("$(( ($(now) - start) / 1000 ))")
    # Let the chain of events berth's own heal raised settle before the next.
    sleep 1.5

    start=$(now)
    docker run --detach --name berth-bench-floor gitlab/gitlab-runner:v17.11.0 >/dev/null
    wait_running berth-bench-floor
    floors+=("$(( ($(now) - start) / 1000 ))")
    docker rm --force berth-bench-floor >/dev/null
done
heal=$(printf '%s\n' "${heals[@]}" | median)
floor=$(printf '%s\n' "${floors[@]}" | median)
ratio=$(awk -v a="$heal" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')
echo "berth $("$BERTH" --version | cut -d' ' -f2), dockerd $(docker version --format '{{.Server.Version}}'), $(nproc) cores, $RUNS runs, medians"
printf 'heal: docker rm -f gitlab-runner to running again %6.1f ms; docker run alone %6.1f ms: %sx (targets <= 1000 ms, <= 1.3x)\n' \
    "$heal" "$floor" "$ratio"
fail=0
awk -v h="$heal" 'BEGIN {exit !(h > 1000)}' && { echo "over target: heal latency" >&2; fail=1; }
awk -v r="$ratio" 'BEGIN {exit !(r > 1.3)}' && { echo "over target: heal vs floor" >&2; fail=1; }
exit "$fail"
