#!/bin/sh
# Regenerate the token-stream goldens: pushes of two files onto changed basis files,
# through the capture relay, for each compressor. The client (real rsync, the sender)
# writes each file's echoed sum_head, token stream and whole-file checksum to c2s.
# Usage: sh make_token_captures.sh   (run from anywhere; needs rsync, python3)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/tokens"
relay="python3 $here/../../../tools/fake_rsh.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$out" <<'PY'
import random, sys, pathlib
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rnd = random.Random(1951)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
         for _ in range(400)]
def text(n):
    return b" ".join(rnd.choice(words) for _ in range(n // 5))[:n]
for name, size in (("f1", 300_000), ("f2", 700_000)):
    source = bytearray(text(size))
    basis = bytearray(source)
    for _ in range(12):  # scattered edits, insertions and deletions
        at = rnd.randrange(len(basis) - 5000)
        kind = rnd.randrange(3)
        if kind == 0:
            basis[at:at + 300] = text(300)
        elif kind == 1:
            basis[at:at] = text(500)
        else:
            del basis[at:at + 700]
    source[100_000:100_000] = bytes(rnd.getrandbits(8) for _ in range(40_000))  # incompressible
    (out / f"{name}.source").write_bytes(source)
    (out / f"{name}.basis").write_bytes(basis)
PY
for case in "none 32 0" "zlib 32 0" "zlibx 32 0" "zstd 32 0" "lz4 32 0" "zlib 30 100000" "zlib 29 70000"; do
    set -- $case
    name="$1-p$2"
    [ "$3" != 0 ] && name="$name-B$3"
    rm -rf "$work/caps" "$work/dst" "$work/src"
    mkdir -p "$work/src" "$work/dst"
    for f in f1 f2; do
        cp "$out/$f.source" "$work/src/$f"
        cp "$out/$f.basis" "$work/dst/$f"
        touch -d '2020-01-01' "$work/dst/$f"
    done
    opts="--protocol=$2"
    [ "$1" != none ] && opts="$opts -z --compress-choice=$1"
    [ "$3" != 0 ] && opts="$opts -B $3"
    RSYNCD_PY_CAPTURE="$work/caps" rsync -e "$relay" $opts --no-whole-file -rt \
        "$work/src/" "lh:$work/dst/"
    for f in f1 f2; do cmp "$work/src/$f" "$work/dst/$f"; done
    mkdir -p "$out/$name"
    cp "$work/caps/0.c2s" "$out/$name/c2s"
    cp "$work/caps/0.s2c" "$out/$name/s2c"
    sed "s|$work|WORK|g" "$work/caps/0.cmd" > "$out/$name/cmd"
done
