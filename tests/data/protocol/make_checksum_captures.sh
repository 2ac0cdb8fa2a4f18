#!/bin/sh
# Regenerate the checksum goldens: pulls with a delta basis through the capture relay.
# For each case the client (real rsync, the generator) sends block sums of basis.bin
# (c2s), and the server (real rsync --server --sender) sends the file list with the -c
# checksum of source.bin and the whole-file checksum after the tokens (s2c).
# Usage: sh make_checksum_captures.sh   (run from this directory; needs rsync, python3)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/checksums"
relay="python3 $here/../../../tools/fake_rsh.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/checksums" <<'PY'
import random, sys, pathlib
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rnd = random.Random(20240611)
source = bytes(rnd.getrandbits(8) for _ in range(20000))
basis = bytearray(source)
basis[3000:3100] = bytes(100)          # a changed region
basis = bytes(basis[:9000] + basis[9700:])  # and a deletion, so blocks shift
(out / "source.bin").write_bytes(source)
(out / "basis.bin").write_bytes(basis)
PY
for case in "md4 29" "md5 30" "md5 31" "xxh64 32" "xxh3 32" "xxh128 32" "sha1 32" "md4 32"; do
    set -- $case
    name="$1-p$2"
    rm -rf "$work/caps" "$work/dst" "$work/src"
    mkdir -p "$work/src" "$work/dst"
    cp "$out/source.bin" "$work/src/f"
    cp "$out/basis.bin" "$work/dst/f"
    touch -d '2020-01-01' "$work/dst/f"
    cc=""
    [ "$2" -ge 30 ] && cc="--checksum-choice=$1"
    RSYNCD_PY_CAPTURE="$work/caps" rsync -e "$relay" --protocol="$2" $cc \
        --checksum-seed=305419896 --no-whole-file -c -t "lh:$work/src/f" "$work/dst/f"
    cmp "$work/src/f" "$work/dst/f"
    mkdir -p "$out/$name"
    cp "$work/caps/0.c2s" "$out/$name/c2s"
    cp "$work/caps/0.s2c" "$out/$name/s2c"
    sed "s|$work|WORK|g" "$work/caps/0.cmd" > "$out/$name/cmd"
done
