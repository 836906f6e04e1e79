#!/usr/bin/env bash
# Times a converged `berth apply` (nothing to do) against two floors of the same questions
# (`GET /info`, every container, network and volume of the profile, the containers' images, and
# berth's three listings on `berth.managed`): asked one after another through the docker CLI,
# one process each (what berth itself did before issue 24), and asked over the socket by one
# `curl --unix-socket` (the round trips alone, after one process start). Also a converged
# profile of 50 containers against one of 1. Targets (issue 24): at most 0.3x the CLI floor,
# and 50 containers at most 1.3x the time of 1.
#
# Runs against a private dockerd it starts itself, in its own network namespace (as the test
# harness does; a second daemon in the machine's namespace breaks its docker0), with stand-in
# images built from busybox-static (no registry is reached). Needs root, docker.io (dockerd and
# the CLI), busybox-static, curl, iproute2 and util-linux.
#
#   bench/converged.sh              # builds berth --release, 30 runs of each
#   RUNS=50 BERTH=path/to/berth bench/converged.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
# shellcheck source=bench/lib.sh
source bench/lib.sh
REAL_DOCKER=$(command -v docker)

# berth starts no docker process when converged: a `docker` first on PATH that logs shows it.
mkdir -p "$T/bin"
cat >"$T/bin/docker" <<EOF
#!/usr/bin/env bash
printf '%q ' "\$@" >>"$T/calls"
echo >>"$T/calls"
exec "$REAL_DOCKER" "\$@"
EOF
chmod +x "$T/bin/docker"
calls() { # ARGS...: how many docker processes a converged `berth apply ARGS...` starts
    : >"$T/calls"
    PATH=$T/bin:$PATH berth apply "$@" >/dev/null
    wc -l <"$T/calls"
}

# The objects of one berth instance: what its converged apply asks about. The apps profiles
# declare the same network and volume, which the first to be applied made: their names are
# read from PROFILE.
questions() { # INSTANCE [PROFILE]: sets CONTAINERS NETWORKS VOLUMES IMAGES
    local filter="label=berth.instance=$1"
    mapfile -t CONTAINERS < <(docker ps --all --filter "$filter" --format '{{.Names}}')
    if [ -n "${2:-}" ]; then
        mapfile -t NETWORKS < <(sed -n 's/^\[networks\.\(.*\)\]$/\1/p' "$2")
        mapfile -t VOLUMES < <(sed -n 's/^\[volumes\.\(.*\)\]$/\1/p' "$2")
    else
        mapfile -t NETWORKS < <(docker network ls --filter "$filter" --format '{{.Name}}')
        mapfile -t VOLUMES < <(docker volume ls --filter "$filter" --format '{{.Name}}')
    fi
    mapfile -t IMAGES < <(docker container inspect --format '{{.Config.Image}}' "${CONTAINERS[@]}" | sort -u)
}
MANAGED=label=berth.managed=true
# {"label":["berth.managed=true"]}, as a query string carries it.
FILTERS=%7B%22label%22%3A%5B%22berth.managed%3Dtrue%22%5D%7D

# shellcheck disable=SC2317  # called through measure's eval
cli_floor() { # the questions of CONTAINERS... through the docker CLI, one process each, in turn
    "$REAL_DOCKER" info --format '{{json .}}'
    "$REAL_DOCKER" container inspect "${CONTAINERS[@]}"
    "$REAL_DOCKER" network inspect "${NETWORKS[@]}"
    "$REAL_DOCKER" volume inspect "${VOLUMES[@]}"
    "$REAL_DOCKER" image inspect "${IMAGES[@]}"
    "$REAL_DOCKER" ps --all --no-trunc --filter "$MANAGED" --format '{{json .ID}}'
    "$REAL_DOCKER" network ls --no-trunc --filter "$MANAGED" --format '{{json .ID}}'
    "$REAL_DOCKER" volume ls --filter "$MANAGED" --format '{{json .Name}}'
}
urls() { # INSTANCE ARRAY [PROFILE]: the same questions as Engine API URLs
    local -n into=$2
    questions "$1" "${3:-}"
    into=(http://docker/info)
    for name in "${CONTAINERS[@]}"; do into+=("http://docker/containers/$name/json"); done
    for name in "${NETWORKS[@]}"; do into+=("http://docker/networks/$name"); done
    for name in "${VOLUMES[@]}"; do into+=("http://docker/volumes/$name"); done
    for name in "${IMAGES[@]}"; do into+=("http://docker/images/$name/json"); done
    into+=("http://docker/containers/json?all=1&filters=$FILTERS"
        "http://docker/networks?filters=$FILTERS" "http://docker/volumes?filters=$FILTERS")
}
# shellcheck disable=SC2317  # called through measure's eval
curl_floor() { # ARRAY: those URLs by one curl, on one connection, one after another
    local -n asked=$1
    curl --silent --fail --unix-socket "${DOCKER_HOST#unix://}" "${asked[@]}"
}
# The CLI floor of INSTANCE, its objects looked up once, outside the timing.
cli_of() { # INSTANCE NAME [PROFILE]: defines the function NAME
    questions "$1" "${3:-}"
    eval "$2() { CONTAINERS=(${CONTAINERS[*]@Q}); NETWORKS=(${NETWORKS[*]@Q}); VOLUMES=(${VOLUMES[*]@Q}); IMAGES=(${IMAGES[*]@Q}); cli_floor; }"
}

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

DIND_INSTANCE=$(docker container inspect --format '{{index .Config.Labels "berth.instance"}}' gitlab-runner)
cli_of "$DIND_INSTANCE" cli_dind
urls "$DIND_INSTANCE" DIND_URLS
echo "berth $("$BERTH" --version | cut -d' ' -f2), docker CLI $(docker version --format '{{.Client.Version}}'), dockerd $(docker version --format '{{.Server.Version}}'), $(nproc) cores, $RUNS runs each, medians"
echo "converged apply of the default profile starts $(calls "${DIND[@]}") docker processes;" \
    "its floors: 8 docker CLI calls, or ${#DIND_URLS[@]} requests by one curl"

measure "apply=berth apply ${DIND[*]}" "cli=cli_dind" "curl=curl_floor DIND_URLS"
ratio=$(ratio "${MEDIAN[apply]}" "${MEDIAN[cli]}")
printf 'default profile: converged apply %6.1f ms, CLI floor %6.1f ms: %sx (target <= 0.3x)\n' \
    "${MEDIAN[apply]}" "${MEDIAN[cli]}" "$ratio"
printf '  curl --unix-socket floor %6.1f ms: berth takes %sx of it\n' "${MEDIAN[curl]}" \
    "$(ratio "${MEDIAN[apply]}" "${MEDIAN[curl]}")"

converge -p "$T/apps-1.toml"
converge -p "$T/apps-50.toml"
cli_of berth-bench-apps-1 cli_one "$T/apps-1.toml"
cli_of berth-bench-apps-50 cli_fifty "$T/apps-50.toml"
urls berth-bench-apps-1 ONE_URLS "$T/apps-1.toml"
urls berth-bench-apps-50 FIFTY_URLS "$T/apps-50.toml"
measure "one=berth apply -p $T/apps-1.toml" "fifty=berth apply -p $T/apps-50.toml" \
    "cli_one=cli_one" "cli_fifty=cli_fifty" \
    "curl_one=curl_floor ONE_URLS" "curl_fifty=curl_floor FIFTY_URLS"
scale=$(ratio "${MEDIAN[fifty]}" "${MEDIAN[one]}")
printf 'converged apply: 50 containers %6.1f ms, 1 container %6.1f ms: %sx (target <= 1.3x)\n' \
    "${MEDIAN[fifty]}" "${MEDIAN[one]}" "$scale"
printf '  CLI floors %6.1f ms and %6.1f ms; curl floors (%s and %s requests) %6.1f ms and %6.1f ms\n' \
    "${MEDIAN[cli_fifty]}" "${MEDIAN[cli_one]}" "${#FIFTY_URLS[@]}" "${#ONE_URLS[@]}" \
    "${MEDIAN[curl_fifty]}" "${MEDIAN[curl_one]}"

fail=0
awk -v r="$ratio" 'BEGIN {exit !(r > 0.3)}' && { echo "over target: converged apply vs the CLI floor" >&2; fail=1; }
awk -v r="$scale" 'BEGIN {exit !(r > 1.3)}' && { echo "over target: 50 containers vs 1" >&2; fail=1; }
exit "$fail"
