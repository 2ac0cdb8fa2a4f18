"""`rsyncd-py mount` and `rsyncd-py umount`: the read-only FUSE view of a store.

``rsyncd-py mount --store URL [--snapshot ID] MOUNTPOINT`` shows the newest snapshot
(or the one asked for) at MOUNTPOINT and every snapshot under MOUNTPOINT/.snapshots/,
read-only (docs/FUSE.md). The store is opened read-only and takes no lease, so a mount
can run beside the server that writes the store; it sees new snapshots under
`.snapshots` without a remount.

Daemon or not. By default the command returns once the mount is up and a background
process serves it: the command re-runs itself in the foreground mode with a pipe
(`--ready-fd`), and the child writes to the pipe after the mount exists, then leaves
the terminal's session. Re-executing rather than forking keeps the pack layer's and
trio's threads out of a fork, and lets every start-up error (bad URL, wrong key,
missing mount point, no /dev/fuse) reach the user's terminal as one line with exit
status 1. An encrypted store's passphrase prompt still works: the child keeps the
terminal until it is ready. `--foreground` serves in this process (for systemd and
tests); Ctrl-C, SIGTERM or SIGHUP unmounts cleanly.

``rsyncd-py umount MOUNTPOINT`` runs ``fusermount3 -u`` (``-z`` with ``--lazy``); the
serving process then unmounts and exits by itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from rsyncd_py.cli.store_options import PROG, UserError, add_store_options, store_url


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `mount` and `umount`."""
    mount = subparsers.add_parser(
        "mount", help="mount a store's snapshots read-only (FUSE)",
        description="Mount the newest snapshot of a store at MOUNTPOINT, and every "
        "snapshot under MOUNTPOINT/.snapshots/<id>/, read-only.",
    )  # fmt: skip
    add_store_options(mount)
    mount.add_argument("--snapshot", help="snapshot id or prefix shown at the root "
                       "(default: the newest at mount time)")
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="serve in this process until unmounted or interrupted")
    mount.add_argument("--allow-other", action="store_true",
                       help="let other users see the mount (stored permissions still apply)")
    mount.add_argument("--log-file", help="append log lines here (a daemon logs nowhere else)")
    mount.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    mount.add_argument("mountpoint", help="an existing directory")
    mount.set_defaults(run=run_mount)

    umount = subparsers.add_parser(
        "umount", help="unmount a store mounted with `rsyncd-py mount`",
        description="Unmount MOUNTPOINT (fusermount3 -u); the serving process then exits.",
    )  # fmt: skip
    umount.add_argument("-z", "--lazy", action="store_true",
                        help="detach now even if the mount is busy")
    umount.add_argument("mountpoint")
    umount.set_defaults(run=run_umount)


# -- mount ----------------------------------------------------------------------------------


def run_mount(args: argparse.Namespace) -> int:
    try:
        store_url(args)
        mountpoint = _check_mountpoint(args.mountpoint)
        if args.foreground or args.ready_fd is not None:
            return _serve(args, mountpoint)
        return _start_daemon(args, mountpoint)
    except (UserError, ValueError) as exc:
        print(f"{PROG} mount: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _check_mountpoint(path: str) -> str:
    mountpoint = os.path.abspath(path)
    if not os.path.isdir(mountpoint):
        raise UserError(f"{path}: not a directory")
    if os.path.ismount(mountpoint):
        raise UserError(f"{path}: already a mount point")
    return mountpoint


def _serve(args: argparse.Namespace, mountpoint: str) -> int:
    """Open the store, mount and serve until unmounted (the foreground mode)."""
    from blockstore.backend import StoreError
    from rsyncd_py.logsetup import configure_logging

    configure_logging(args.verbose, args.log_file)
    try:
        from blockstore.fuse.mount import serve
        from blockstore.volume import open_volume
    except ImportError as exc:
        raise UserError(f"FUSE support is not installed ({exc.name}): "
                        "pip install 'rsyncd-py[fuse]'") from exc
    try:
        volume = open_volume(args.store, key_file=args.key_file, state_dir=args.state_dir,
                             read_only=True)
    except (StoreError, OSError) as exc:
        raise UserError(str(exc)) from exc
    try:
        snapshot = volume.snapshot(args.snapshot) if args.snapshot else volume.latest()
        shown = snapshot.id if snapshot is not None else "(no snapshots yet: empty)"
        notice = (f"{PROG} mount: {mountpoint}: snapshot {shown} of {args.store}, read-only; "
                  f"all snapshots under {mountpoint}/.snapshots/; "
                  f"unmount with `{PROG} umount {mountpoint}`")

        def ready() -> None:
            if args.ready_fd is None:
                print(notice, file=sys.stderr, flush=True)
            else:
                os.write(args.ready_fd, notice.encode(errors="replace"))
                os.close(args.ready_fd)
                _detach()

        serve(volume, mountpoint, snapshot=snapshot, fsname=args.store,
              allow_other=args.allow_other, on_ready=ready)
    except StoreError as exc:
        raise UserError(str(exc)) from exc
    except RuntimeError as exc:  # pyfuse3.init: libfuse printed the reason just before
        raise UserError(f"cannot mount {mountpoint}: {exc} "
                        "(is /dev/fuse available and fusermount3 installed?)") from exc
    finally:
        volume.close()
    return 0


def _detach() -> None:
    """Leave the starting terminal's session; stdio to /dev/null (logs go to --log-file)."""
    os.setsid()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _start_daemon(args: argparse.Namespace, mountpoint: str) -> int:
    """Run the foreground mode in a child; return once it reports the mount is up."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "rsyncd_py.cli.main", "mount", "--store", args.store,
            "--ready-fd", str(write_end)]
    for option, value in (("--snapshot", args.snapshot), ("--key-file", args.key_file),
                          ("--state-dir", args.state_dir), ("--log-file", args.log_file)):
        if value is not None:
            argv += [option, os.path.abspath(value) if option != "--snapshot" else value]
    if args.allow_other:
        argv.append("--allow-other")
    argv += ["-v"] * args.verbose + ["--", mountpoint]
    child = subprocess.Popen(argv, pass_fds=(write_end,), stdout=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        notice = ready.read()
    if notice:
        print(notice.decode(errors="replace"), file=sys.stderr)
        return 0
    return child.wait() or 1  # the child printed its own error line


# -- umount ---------------------------------------------------------------------------------


def run_umount(args: argparse.Namespace) -> int:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        command = [tool, "-u", *(["-z"] if args.lazy else []), args.mountpoint]
    else:
        command = ["umount", *(["-l"] if args.lazy else []), args.mountpoint]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.strip() or f"{command[0]} exited with {result.returncode}"
        print(f"{PROG} umount: {reason}", file=sys.stderr)
        return 1
    return 0
