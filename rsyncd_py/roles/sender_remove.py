"""--remove-source-files on the sending side (a pull): rsync's sender.c successful_send.

Theory of operation. Each file the client has in place (transferred or already up to
date) comes back as MSG_SUCCESS with its index. The message handler runs on the Wire's
reader task, before the records queued behind it, so it looks the entry up at once
(with incremental recursion its list may be gone by the time the sender reads on) and
queues it; the sender removes the queued ones between records and before it ends.
A file that changed since it was listed (size or mtime) is kept, with rsync's error;
one already gone is only mentioned. The session opens a writable file system for a
pull with this option: on a store the removals are committed as a new snapshot, and
a snapshot itself (/.snapshots) refuses them as read-only.

State: the queue of (name, path, listed Stat) not yet removed.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable

from rsyncd_py.fs.base import FileSystem, FsError, Stat
from rsyncd_py.protocol.constants import MSG_SUCCESS
from rsyncd_py.protocol.errors import ExitCode, RemoteProtocolError
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.roles.flist_build import SendEntry
from rsyncd_py.wire import Log, Wire


class SourceRemover:
    """The files a pull has to remove once the client has them (see the docstring)."""

    def __init__(
        self, wire: Wire, fs: FileSystem, opts: ServerOptions, find: Callable[[int], SendEntry]
    ) -> None:
        self.wire = wire
        self.fs = fs
        self.find = find
        self.report = opts.verbose >= 2 or _info_word(opts, b"remove")
        self._pending: deque[tuple[bytes, bytes, Stat]] = deque()

    def on_success(self, payload: bytes) -> None:
        """io.c read_a_msg MSG_SUCCESS (sender side): queue the file for removal."""
        if len(payload) != 4:
            raise RemoteProtocolError(
                f"invalid multi-message {MSG_SUCCESS}:{len(payload)}", ExitCode.RERR_STREAMIO
            )
        sent = self.find(int.from_bytes(payload, "little", signed=True))
        self._pending.append((sent.entry.name, sent.path, sent.st))

    async def remove_pending(self) -> None:
        """Rsync sender.c:successful_send for each queued file."""
        while self._pending:
            name, path, listed = self._pending.popleft()
            await self._remove(name.decode("utf-8", "surrogateescape"), path, listed)

    async def _remove(self, name: str, path: bytes, listed: Stat) -> None:
        wire = self.wire
        st: Stat | None = None
        try:
            st = await self.fs.lstat(path)
            if st is None:
                raise FsError(errno.ENOENT, "No such file or directory", path)
            if st.size != listed.size or st.mtime_ns != listed.mtime_ns:
                wire.rprintf(
                    Log.ERROR_XFER, f"ERROR: Skipping sender remove for changed file: {name}\n"
                )
                return
            await self.fs.remove(path)
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                wire.rprintf(Log.INFO, f"sender file already removed: {name}\n")
            else:
                what = "re-lstat" if st is None else "remove"
                wire.rprintf(
                    Log.ERROR_XFER,
                    f"rsync: [sender] sender failed to {what} {name}: "
                    f"{exc.strerror or exc} ({exc.errno})\n",
                )
            return
        if self.report:
            wire.rprintf(Log.INFO, f"sender removed {name}\n")


def _info_word(opts: ServerOptions, word: bytes) -> bool:
    """Whether --info names `word` at level 1 or more (e.g. --info=remove)."""
    for text in opts.info:
        for part in text.lower().encode().split(b","):
            if part.startswith(word) and part[len(word) :] not in (b"0",):
                return True
    return False
