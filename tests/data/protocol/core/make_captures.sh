#!/bin/sh
# Regenerate the core-protocol goldens: pushes of tree.py's tree to a real
# `rsync --server` through tools/fake_rsh.py's capture relay. Each case leaves
# <case>.cmd (the remote command), <case>.c2s (client to server) and <case>.s2c.
# Usage: sh make_captures.sh   (needs rsync and python3; run as root for owners)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
relay="python3 $here/../../../../tools/fake_rsh.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/tree.py" "$work/src"
for case in "push-p32|-a --no-inc-recursive" \
            "push-p31-itemize|-ai --no-inc-recursive --protocol=31" \
            "push-p30|-a --no-inc-recursive --protocol=30" \
            "push-p29|-a --protocol=29" \
            "push-p27|-a --protocol=27" \
            "push-delete-p32|-a --no-inc-recursive --delete"; do
    name=${case%%|*}
    opts=${case#*|}
    rm -rf "$work/caps" "$work/dst"
    mkdir -p "$work/dst"
    case $name in *delete*) python3 "$here/tree.py" "$work/dst/dst" extra ;; esac
    # shellcheck disable=SC2086
    RSYNCD_PY_CAPTURE="$work/caps" rsync $opts -e "$relay" \
        --rsync-path "cd $work/dst && rsync" "$work/src/" lh:dst/ >/dev/null
    sed "s/^cd [^&]*&& //" "$work/caps/0.cmd" > "$here/$name.cmd"
    cp "$work/caps/0.c2s" "$here/$name.c2s"
    cp "$work/caps/0.s2c" "$here/$name.s2c"
done
