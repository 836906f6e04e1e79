#!/usr/bin/env bash
# Times how long a fresh runner host takes to do its job: seconds from `berth apply` on an empty
# daemon (no containers, networks or volumes; the profile's images present) to the runner's
# first successful `docker build` through dind, for the `dind` and `dind-tls` profiles, median
# of RUNS runs each (default 5).
#
# Runs against a private dockerd it starts itself in its own network namespace (as the test
# harness does), with the real stand-in images the tests use (tests/fixtures/images/build.sh:
# the host's own docker.io binaries in dind, the docker CLI in the runner) and the dind
# container given SYS_ADMIN, NET_ADMIN and seccomp=unconfined instead of --privileged (which
# cannot start on these machines). No registry is reached, so what a real first build would
# pull, its FROM image (busybox, 2 MB), is imported into the nested daemon through the runner
# inside the timed span. Needs root, docker.io, tini, iptables, openssl, busybox-static,
# iproute2 and util-linux.
#
#   bench/dind-build.sh              # builds berth --release, 5 runs of each profile
#   RUNS=9 BERTH=path/to/berth bench/dind-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
# shellcheck source=bench/daemon.sh
source bench/daemon.sh

# The real stand-ins, tagged as the profiles' images.
tests/fixtures/images/build.sh "$T/images"
PATHS='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
docker import -c 'ENTRYPOINT ["dockerd-entrypoint.sh"]' -c 'CMD []' -c 'VOLUME /var/lib/docker' \
    -c 'ENV DOCKER_TLS_CERTDIR=/certs' -c "$PATHS" "$T/images/dind.tar" docker:27-dind >/dev/null
docker import -c 'ENTRYPOINT ["/bin/sh", "-c", "trap \"exit 0\" TERM QUIT; while :; do sleep 1 & wait $!; done", "stand-in"]' \
    -c 'CMD ["run"]' -c "$PATHS" "$T/images/runner.tar" gitlab/gitlab-runner:v17.11.0 >/dev/null
# The FROM image of the first build, loaded into the nested daemon inside the timed span.
mkdir -p "$T/base/bin"
cp "$(command -v busybox)" "$T/base/bin/busybox"
for applet in sh echo cat; do ln -s busybox "$T/base/bin/$applet"; done
tar -C "$T/base" -cf "$T/base.tar" .

printf '[containers.gitlab-dind]\nprivileged = false\ncap_add = ["SYS_ADMIN", "NET_ADMIN"]\nsecurity_opt = ["seccomp=unconfined"]\n' >"$T/capabilities.toml"

berth() { "$BERTH" -q --root "$ROOT" "$@"; }
now() { date +%s%N; }
empty_daemon() { # what a previous run made, so the next apply starts from nothing
    docker ps -aq | xargs -r docker rm -f >/dev/null
    docker network prune -f >/dev/null
    docker volume prune -af >/dev/null 2>&1 || docker volume prune -f >/dev/null
    rm -rf "$ROOT/srv" "$ROOT/var/lib/berth"
}
first_build() { # the runner's first successful `docker build`, retried until the nested daemon answers
    until docker exec gitlab-runner docker version >/dev/null 2>&1; do sleep 0.05; done
    docker exec -i gitlab-runner docker import - bench/base:1 <"$T/base.tar" >/dev/null
    docker exec gitlab-runner sh -c 'mkdir -p /tmp/context &&
        printf "FROM bench/base:1\nRUN echo built > /built\n" >/tmp/context/Dockerfile &&
        docker build -q -t bench/built:1 /tmp/context' >/dev/null 2>"$T/build.log" ||
        { cat "$T/build.log" >&2; exit 1; }
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

echo "berth $("$BERTH" --version | cut -d' ' -f2), dockerd $(docker version --format '{{.Server.Version}}') (also in dind), docker CLI $(docker version --format '{{.Client.Version}}'), $(nproc) cores, $RUNS runs each, medians"
for profile in dind dind-tls; do
    applies=() totals=()
    for _ in $(seq "$RUNS"); do
        empty_daemon
        start=$(now)
        berth apply -p "$profile" -p "$T/capabilities.toml" >/dev/null
        applied=$(now)
        first_build
        end=$(now)
        berth plan -p "$profile" -p "$T/capabilities.toml" >/dev/null || { echo "not converged: $profile" >&2; exit 1; }
        applies+=("$(( (applied - start) / 1000000 ))")
        totals+=("$(( (end - start) / 1000000 ))")
    done
    apply_ms=$(printf '%s\n' "${applies[@]}" | median)
    total_ms=$(printf '%s\n' "${totals[@]}" | median)
    printf '%-9s apply %5.1f s, apply to first docker build %5.1f s  (runs, ms: %s)\n' "$profile" \
        "$(awk -v ms="$apply_ms" 'BEGIN {print ms / 1000}')" "$(awk -v ms="$total_ms" 'BEGIN {print ms / 1000}')" "${totals[*]}"
done
