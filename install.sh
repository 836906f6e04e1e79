#!/bin/sh
# Installs berth on this host: the binary, the profiles, /etc/berth/berth.toml, and the systemd
# service and timer (enabled unless --no-enable). Idempotent: a second run changes nothing.
#
#   sudo ./install.sh                      build with cargo and install under /usr/local
#   sudo ./install.sh --binary ./berth     install a binary built elsewhere
#   ./install.sh --destdir pkg --prefix /usr --no-enable    stage a package tree
#   sudo ./install.sh --uninstall          remove what was installed, and nothing else
#
# A profile the operator changed is never overwritten: the new one lands beside it as NAME.new.
# What was installed is recorded with its checksum in PREFIX/share/berth/install-manifest, which
# is how a later run knows a file is still as installed, and how --uninstall knows what is its.
# DESTDIR and PREFIX may also come from the environment.
set -eu

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
destdir=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}
binary=
enable=yes
action=install

while [ $# -gt 0 ]; do
    case $1 in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --no-enable) enable=no; shift ;;
        --uninstall) action=uninstall; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument \`$1\` (see --help)" ;;
    esac
done

case $prefix in
    /*) ;;
    *) die "--prefix must be absolute, not \`$prefix\`" ;;
esac
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi

bin_dir=$prefix/bin
unit_dir=$prefix/lib/systemd/system
doc_dir=$prefix/share/doc/berth
manifest=$prefix/share/berth/install-manifest
profile_dir=/etc/berth/profiles
host_config=/etc/berth/berth.toml
timer_link=/etc/systemd/system/timers.target.wants/berth.timer

# Live means installing onto this running system (not into a staging tree), where systemctl
# can reload and start things.
live=no
if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    live=yes
fi

checksum() {
    sha256sum "$1" | cut -d' ' -f1
}

# The checksum recorded for an installed path, if any.
recorded() {
    [ -f "$destdir$manifest" ] || return 0
    awk -v path="$1" '$2 == path { print $1 }' "$destdir$manifest"
}

new_manifest=
record() {
    printf '%s %s\n' "$1" "$2" >>"$new_manifest"
}

# make_dirs DIR: creates DIR and the parents it lacks, recording the ones it created so that
# --uninstall removes exactly those.
make_dirs() {
    missing=
    dir=$1
    while [ "$dir" != / ] && [ ! -d "$destdir$dir" ]; do
        missing="$dir $missing"
        dir=$(dirname "$dir")
    done
    for dir in $missing; do
        mkdir "$destdir$dir"
        record dir "$dir"
    done
}

# install_file SOURCE DEST MODE: copy when the content differs, keep the mode, record it.
install_file() {
    source=$1 dest=$2 mode=$3
    make_dirs "$(dirname "$dest")"
    if ! cmp -s "$source" "$destdir$dest" 2>/dev/null; then
        tmp=$(mktemp "$destdir$dest.XXXXXX")
        cat "$source" >"$tmp"
        chmod "$mode" "$tmp"
        mv -f "$tmp" "$destdir$dest"
        echo "installed $dest"
    fi
    chmod "$mode" "$destdir$dest"
    record "$(checksum "$destdir$dest")" "$dest"
}

# install_profile SOURCE DEST: like install_file, but an operator's edits always win.
install_profile() {
    source=$1 dest=$2
    if [ -f "$destdir$dest" ] && ! cmp -s "$source" "$destdir$dest"; then
        was=$(recorded "$dest")
        if [ -z "$was" ] || [ "$was" != "$(checksum "$destdir$dest")" ]; then
            # Changed by the operator (or never ours): keep it, offer ours beside it.
            install_file "$source" "$dest.new" 0644
            # Remember the checksum as installed: if the operator reverts their edit, the file
            # is ours again.
            if [ -n "$was" ]; then
                record "$was" "$dest"
            fi
            return
        fi
    fi
    rm -f "$destdir$dest.new"
    install_file "$source" "$dest" 0644
}

do_install() {
    if [ -z "$binary" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo is not installed: build elsewhere and pass --binary PATH"
        (cd "$here" && cargo build --release --locked)
        binary=$here/target/release/berth
    fi
    [ -x "$binary" ] || die "\`$binary\` is not an executable"

    new_manifest=$(mktemp)
    trap 'rm -f "$new_manifest"' EXIT
    # Directories an earlier run created stay ours.
    if [ -f "$destdir$manifest" ]; then
        grep '^dir ' "$destdir$manifest" >>"$new_manifest" || true
    fi

    install_file "$binary" "$bin_dir/berth" 0755
    install_file "$here/README.md" "$doc_dir/README.md" 0644
    for profile in "$here"/profiles/*.toml; do
        install_profile "$profile" "$profile_dir/$(basename "$profile")"
    done

    if [ ! -e "$destdir$host_config" ]; then
        config=$(mktemp)
        cat >"$config" <<'EOF'
# berth's settings for this host. `berth apply` (and the timer) converge to these profiles, in
# order: later ones merge over earlier ones. A name is /etc/berth/profiles/NAME.toml, else the
# profile embedded in the binary.
profiles = ["dind"]
EOF
        install_file "$config" "$host_config" 0644
        rm -f "$config"
    elif [ -n "$(recorded "$host_config")" ]; then
        # Ours from an earlier run: keep recording it (unchanged or not, it is never rewritten).
        record "$(recorded "$host_config")" "$host_config"
    fi

    unit=$(mktemp)
    sed "s|/usr/local/bin/berth|$bin_dir/berth|; s|/usr/local/share/doc/berth|$doc_dir|" "$here/systemd/berth.service" >"$unit"
    install_file "$unit" "$unit_dir/berth.service" 0644
    sed "s|/usr/local/share/doc/berth|$doc_dir|" "$here/systemd/berth.timer" >"$unit"
    install_file "$unit" "$unit_dir/berth.timer" 0644
    # Installed, never enabled here: the faster alternative to the timer, for the operator to
    # turn on (`systemctl enable --now berth-watch`).
    sed "s|/usr/local/bin/berth|$bin_dir/berth|; s|/usr/local/share/doc/berth|$doc_dir|" "$here/systemd/berth-watch.service" >"$unit"
    install_file "$unit" "$unit_dir/berth-watch.service" 0644
    rm -f "$unit"

    if [ "$enable" = yes ]; then
        make_dirs "$(dirname "$timer_link")"
        if [ "$(readlink "$destdir$timer_link" 2>/dev/null)" != "$unit_dir/berth.timer" ]; then
            ln -sfn "$unit_dir/berth.timer" "$destdir$timer_link"
            echo "enabled berth.timer"
        fi
        record symlink "$timer_link"
    fi

    make_dirs "$(dirname "$manifest")"
    sort -u -o "$new_manifest" "$new_manifest"
    if ! cmp -s "$new_manifest" "$destdir$manifest" 2>/dev/null; then
        cat "$new_manifest" >"$destdir$manifest"
    fi
    chmod 0644 "$destdir$manifest"

    if [ "$live" = yes ]; then
        systemctl daemon-reload
        if [ "$enable" = yes ]; then
            systemctl start berth.timer
        fi
    fi
}

do_uninstall() {
    [ -f "$destdir$manifest" ] || die "nothing to uninstall: no $destdir$manifest"
    if [ "$live" = yes ]; then
        systemctl disable --now berth.timer 2>/dev/null || true
        systemctl disable --now berth-watch.service 2>/dev/null || true
    fi
    while read -r sum path; do
        if [ "$sum" = symlink ]; then
            rm -f "$destdir$path"
        elif [ "$sum" != dir ] && [ -f "$destdir$path" ]; then
            if [ "$(checksum "$destdir$path")" = "$sum" ]; then
                rm -f "$destdir$path"
                echo "removed $path"
            else
                echo "kept $path: changed since it was installed"
            fi
        fi
    done <"$destdir$manifest"
    created=$(awk '$1 == "dir" { print $2 }' "$destdir$manifest" | sort -r)
    rm -f "$destdir$manifest"
    # The directories it created, deepest first, unless something else was put in them.
    for dir in $created; do
        rmdir "$destdir$dir" 2>/dev/null || true
    done
    if [ "$live" = yes ]; then
        systemctl daemon-reload
    fi
}

case $action in
    install) do_install ;;
    uninstall) do_uninstall ;;
esac
