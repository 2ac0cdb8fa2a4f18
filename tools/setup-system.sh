#!/usr/bin/env bash
# Install the Debian packages rsyncd-py needs, but only those that are missing.
#
#   rsync, openssh-client           the real clients the tests drive (rsync -e ssh, ssh, sftp)
#   openssh-server                  stock sshd + rsync: the baseline the benchmarks compare to
#   fuse3, libfuse3-dev, pkg-config the read-only FUSE view (pyfuse3 is built against libfuse3)
#   python3, python3-venv,
#   python3-dev, gcc                the virtualenv and the C extensions pip may have to build
#   ca-certificates                 pip talks HTTPS to PyPI
#   util-linux                      taskset (CPU pinning in the benchmarks)
#   acl                             setfacl/getfacl: the -A interop tests set and compare ACLs
#
# Silent and quick when everything is present, so `make` can run it every time.
# Needs root, or sudo for a normal user.
set -euo pipefail
want=(
    rsync openssh-client openssh-server
    fuse3 libfuse3-dev pkg-config
    python3 python3-venv python3-dev gcc
    ca-certificates util-linux acl
)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "setup-system.sh: missing Debian packages: ${missing[*]}" >&2
    echo "setup-system.sh: run as root (or install sudo) to install them" >&2
    exit 1
fi
echo "setup-system.sh: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
