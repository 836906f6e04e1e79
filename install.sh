#!/bin/sh
# Installs berth on this host: the binary, its man page and shell completions, the profiles,
# an example berth.toml, and the systemd units. It changes nothing berth converges and starts
# nothing: the timer is enabled only with --enable-timer. Idempotent: a second run changes nothing.
#
#   sudo ./install.sh                      install target/release/berth (built first with
#                                          cargo when there is none) under /usr/local
#   sudo ./install.sh --binary ./berth     install a binary built elsewhere
#   sudo ./install.sh --enable-timer       also enable and start berth.timer
#   ./install.sh --destdir pkg --prefix /usr    stage a package tree
#   sudo ./install.sh --uninstall          remove what was installed, and nothing else
#
# A profile the operator changed is never overwritten: when the shipped one changed too, it
# lands beside it as NAME.toml.new (dpkg's conffile rule). What was installed is recorded with
# its checksum in PREFIX/share/berth/install-manifest, with the checksum of each shipped
# profile: how a later run knows a file is still as installed or the shipped copy is new, and
# how --uninstall knows what is its. DESTDIR and PREFIX may also come from the environment.
set -eu

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
destdir=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}
binary=
enable=no
action=install

while [ $# -gt 0 ]; do
    case $1 in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --enable-timer) enable=yes; shift ;;
        # The old default was to enable; saying so is now the default.
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
man_dir=$prefix/share/man/man1
bash_completion_dir=$prefix/share/bash-completion/completions
zsh_completion_dir=$prefix/share/zsh/site-functions
fish_completion_dir=$prefix/share/fish/vendor_completions.d
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
    awk -v path="$1" 'NF == 2 && $2 == path { print $1 }' "$destdir$manifest"
}

# The checksum of the shipped copy last installed or offered for a profile, if recorded.
recorded_shipped() {
    [ -f "$destdir$manifest" ] || return 0
    awk -v path="$1" '$1 == "shipped" && $3 == path { print $2 }' "$destdir$manifest"
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

# install_profile SOURCE DEST: like install_file, but an operator's edits always win, and
# the shipped copy is offered beside an edited one (DEST.new) only when it changed since it was
# last installed or offered, as dpkg does with a conffile.
install_profile() {
    # Own names: sh has no locals, and install_file sets `source` and `dest`.
    profile_source=$1 profile=$2
    shipped=$(checksum "$profile_source")
    if [ -f "$destdir$profile" ] && ! cmp -s "$profile_source" "$destdir$profile"; then
        was=$(recorded "$profile")
        if [ -z "$was" ] || [ "$was" != "$(checksum "$destdir$profile")" ]; then
            # Changed by the operator (or never ours): keep it. A manifest from before shipped
            # copies were recorded knows the installed one's checksum, which was the shipped one.
            offered=$(recorded_shipped "$profile")
            offered=${offered:-$was}
            if [ "$offered" != "$shipped" ] || [ -f "$destdir$profile.new" ]; then
                install_file "$profile_source" "$profile.new" 0644
            fi
            # Remember the checksum as installed: if the operator reverts their edit, the file
            # is ours again.
            if [ -n "$was" ]; then
                record "$was" "$profile"
            fi
            record "shipped $shipped" "$profile"
            return
        fi
    fi
    rm -f "$destdir$profile.new"
    install_file "$profile_source" "$profile" 0644
    record "shipped $shipped" "$profile"
}

# install_generated DEST MODE COMMAND...: installs what COMMAND prints (the man page and the
# completions come from the binary itself); a binary that cannot run here skips it, loudly.
install_generated() {
    dest=$1 mode=$2
    shift 2
    generated=$(mktemp)
    if "$@" >"$generated" 2>/dev/null; then
        install_file "$generated" "$dest" "$mode"
    else
        echo "install.sh: skipped $dest: \`$*\` failed" >&2
    fi
    rm -f "$generated"
}

next_steps() {
    echo
    echo "berth is installed. Nothing it manages on this host has changed, and nothing runs it yet."
    echo "Next:"
    named=$(grep -m1 '^[[:space:]]*profiles[[:space:]]*=' "$destdir$host_config" 2>/dev/null || true)
    if [ -n "$named" ]; then
        echo "  1. $host_config names the profiles: $named"
    else
        echo "  1. sudo berth init --url URL --runner NAME    write the site profile and $host_config"
        echo "     (or write them yourself, from $doc_dir/berth.toml.example)"
    fi
    echo "  2. berth plan                                 see what apply would change"
    echo "  3. sudo berth apply                           converge the host"
    if [ "$enable" = yes ]; then
        echo "  4. berth.timer is enabled: it converges every 15 minutes once $host_config names"
        echo "     the profiles (until then each run refuses and says so in \`journalctl -u berth\`)"
    else
        echo "  4. sudo systemctl enable --now berth.timer    converge every 15 minutes from then on"
    fi
    echo "     (or \`sudo systemctl enable --now berth-watch\` to heal drift the moment it happens)"
}

# The Debian package's berth, when dpkg lists it as installed under DESTDIR (or on this host).
package_installed() {
    admindir=$destdir/var/lib/dpkg
    [ -d "$admindir" ] && command -v dpkg-query >/dev/null 2>&1 || return 1
    status=$(dpkg-query --admindir="$admindir" -W -f='${Status}' berth 2>/dev/null) || return 1
    [ "${status##* }" = installed ]
}

do_install() {
    # Both would install units of the same names, and /usr/local's shadow /usr/lib's: the host
    # would run whichever systemd finds first, not the one its operator upgrades.
    if package_installed; then
        die "berth is installed from its Debian package (/usr/bin/berth and its units); installing here too would shadow them. Upgrade the package instead (./build-deb.sh, then \`sudo apt install ./target/debian/berth_*.deb\`), or switch to install.sh: \`sudo apt-get remove berth\` first (/etc/berth stays), then run install.sh again"
    fi
    # README's way: `cargo build --release` as yourself, then `sudo ./install.sh`, where root
    # often has no cargo: the binary already built is the one to install.
    if [ -z "$binary" ] && [ -x "$here/target/release/berth" ]; then
        binary=$here/target/release/berth
        echo "using $binary (run \`cargo build --release\` first to install newer sources)" >&2
    fi
    if [ -z "$binary" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo is not installed and there is no target/release/berth: run \`cargo build --release --locked\` as yourself first, or build elsewhere and pass --binary PATH"
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
    install_generated "$man_dir/berth.1" 0644 "$binary" man
    install_generated "$bash_completion_dir/berth" 0644 "$binary" completions bash
    install_generated "$zsh_completion_dir/_berth" 0644 "$binary" completions zsh
    install_generated "$fish_completion_dir/berth.fish" 0644 "$binary" completions fish
    for profile in "$here"/profiles/*.toml; do
        install_profile "$profile" "$profile_dir/$(basename "$profile")"
    done

    # berth.toml is the operator's (`berth init` writes it, and never over a file): only an
    # example is installed. One an earlier install.sh wrote stays recorded as ours.
    install_file "$here/packaging/berth.toml" "$doc_dir/berth.toml.example" 0644
    if [ -e "$destdir$host_config" ] && [ -n "$(recorded "$host_config")" ]; then
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
    elif [ -L "$destdir$timer_link" ] && grep -q "^symlink $timer_link\$" "$destdir$manifest" 2>/dev/null; then
        # Enabled by an earlier run: left as the operator has it, and still ours to remove.
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
    next_steps
}

do_uninstall() {
    [ -f "$destdir$manifest" ] || die "nothing to uninstall: no $destdir$manifest"
    if [ "$live" = yes ]; then
        systemctl disable --now berth.timer 2>/dev/null || true
        systemctl disable --now berth-watch.service 2>/dev/null || true
    fi
    while read -r sum path; do
        if [ "$sum" = shipped ]; then
            continue
        elif [ "$sum" = symlink ]; then
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
