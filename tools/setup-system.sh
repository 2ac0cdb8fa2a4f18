#!/usr/bin/env bash
# Install the Debian packages rsyncd-py needs, but only those that are missing.
# rsync and openssh-client are the real clients the tests drive; openssh-server is the
# stock-rsync baseline in the benchmarks; fuse3 + libfuse3-dev + pkg-config build and run
# pyfuse3; python3-venv/python3-dev/gcc build the virtualenv.
set -euo pipefail
want=(rsync openssh-client openssh-server fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
