"""Serving a mount: pyfuse3 on trio in this process, and a clean unmount on the way out.

Theory of operation. `serve` mounts (`pyfuse3.init`: after it returns the mount exists
and the kernel queues requests), calls `on_ready` (the command line uses it to tell a
waiting parent, or the user, that the mount is up), then runs pyfuse3's request loop
on trio, its native loop, in the calling thread (never inside an asyncio server). It
returns when the file system is unmounted from outside (`fusermount3 -u`,
`rsyncd-py umount`) or when SIGINT, SIGTERM or SIGHUP arrives; either way it unmounts
before returning (lazily if the mount point is still busy, so no dead mount is left
behind), and also when the loop fails.

Mount options: always read-only (`ro`: the kernel refuses writes before they reach us),
`default_permissions` (the kernel enforces the stored modes, owners and ACLs, so a 0600
file of the backup stays private even with `allow_other`), `nodev`/`nosuid` (device nodes
and set-id bits are shown, never honoured), and `fsname`/`subtype` so `mount` and
`df` name the store.
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Callable

import pyfuse3
import trio

from blockstore.fuse.fs import StoreOperations
from blockstore.volume import Snapshot, Volume

log = logging.getLogger(__name__)

SUBTYPE = "rsyncd-py"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SAFE_FSNAME = re.compile(r"[A-Za-z0-9_./:@+=~-]{1,200}")


def mount_options(*, fsname: str, allow_other: bool = False, debug: bool = False) -> set[str]:
    """The FUSE mount options (see the module docstring); `fsname` is shown by `mount`."""
    if not _SAFE_FSNAME.fullmatch(fsname):  # commas or spaces would break the option list
        fsname = SUBTYPE
    options = {"ro", "default_permissions", "nodev", "nosuid",
               f"fsname={fsname}", f"subtype={SUBTYPE}"}
    if allow_other:
        options.add("allow_other")
    if debug:
        options.add("debug")
    return options


def serve(
    volume: Volume,
    mountpoint: str,
    *,
    snapshot: Snapshot | None,
    fsname: str = SUBTYPE,
    allow_other: bool = False,
    debug: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount `volume` at `mountpoint` (root: `snapshot`) and serve until unmounted."""
    operations = StoreOperations(volume, snapshot)
    pyfuse3.init(operations, mountpoint,
                 mount_options(fsname=fsname, allow_other=allow_other, debug=debug))
    try:
        if on_ready is not None:
            on_ready()
        trio.run(_run, operations)
    finally:
        pyfuse3.close(unmount=True)
        log.info("unmounted %s", mountpoint)


async def _run(operations: StoreOperations) -> None:
    async with trio.open_nursery() as nursery:
        operations.nursery = nursery  # read-ahead fetches outlive the request that started them
        nursery.start_soon(_stop_on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_signal() -> None:
    """End the request loop on the first stop signal (the caller then unmounts)."""
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return
