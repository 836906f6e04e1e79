# Shared by converged.sh and heal.sh: the private dockerd (bench/daemon.sh), stand-in images
# built from busybox-static, and the default profile converged under the temporary root.
# Sourced, not run.
# shellcheck shell=bash
# shellcheck source=bench/daemon.sh
source bench/daemon.sh

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
    # An instance of its own: the default profile's objects, and the other apps profile's, are
    # then another berth's, not orphans for this one to remove.
    printf 'instance = "berth-bench-apps-%s"\n' "$1"
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

