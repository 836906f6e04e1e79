#!/bin/sh
# Builds berth's Debian package with cargo-deb (`[package.metadata.deb]` in Cargo.toml):
# target/debian/berth_VERSION-1_ARCH.deb, installed with `sudo apt install ./berth_*.deb`.
#
#   ./build-deb.sh                          cargo build --release, then the package
#   ./build-deb.sh --no-build               package TARGET/release/berth as it is (the tests put
#                                           their build there, in a CARGO_TARGET_DIR of their own)
#   ./build-deb.sh -- --output DIR          anything after -- goes to cargo-deb
#
# The man page, the completions and the units (pointing at /usr/bin/berth) are generated first,
# by the binary being packaged, into TARGET/PROFILE/deb/, where Cargo.toml's assets expect
# them. cargo-deb comes from PATH, else it is installed once into TARGET/tools (crates.io).
# CARGO_TARGET_DIR is honoured.
set -eu

die() {
    echo "build-deb.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
profile=release
build=yes
while [ $# -gt 0 ]; do
    case $1 in
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; profile=$2; shift 2 ;;
        --profile=*) profile=${1#*=}; shift ;;
        --no-build) build=no; shift ;;
        --) shift; break ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument \`$1\` (see --help)" ;;
    esac
done

target_dir=${CARGO_TARGET_DIR:-$here/target}
case $profile in
    dev | test) profile_dir=$target_dir/debug ;;
    *) profile_dir=$target_dir/$profile ;;
esac

if [ "$build" = yes ]; then
    (cd "$here" && cargo build --locked --profile "$profile")
fi
binary=$profile_dir/berth
[ -x "$binary" ] || die "no \`$binary\`: build it first, or drop --no-build"

assets=$profile_dir/deb
mkdir -p "$assets"
"$binary" man | gzip -9n >"$assets/berth.1.gz"
"$binary" completions bash >"$assets/berth.bash"
"$binary" completions zsh >"$assets/_berth"
"$binary" completions fish >"$assets/berth.fish"
for unit in berth.service berth.timer berth-watch.service; do
    sed 's|/usr/local/bin/berth|/usr/bin/berth|; s|/usr/local/share/doc/berth|/usr/share/doc/berth|' \
        "$here/systemd/$unit" >"$assets/$unit"
done

cargo_deb=$(command -v cargo-deb || true)
if [ -z "$cargo_deb" ]; then
    cargo_deb=$target_dir/tools/bin/cargo-deb
    if [ ! -x "$cargo_deb" ]; then
        # Pinned, so a package built today and next year comes out the same.
        cargo install --locked cargo-deb@3.8.0 --root "$target_dir/tools"
    fi
fi
cd "$here"
"$cargo_deb" --no-build --profile "$profile" "$@"
