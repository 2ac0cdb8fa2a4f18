"""--backup on the receiving side (backup.c make_backup, get_backup_name).

Before an entry is replaced or deleted, its old version is kept under its backup name:
NAME + --suffix ("~" by default) beside it, or --backup-dir/NAME + suffix (the suffix is
empty then), relative to the destination directory. A regular file about to be replaced
is hard-linked to the backup name, so it stays in place until the new version is
renamed over it; anything else, and anything being deleted, is renamed. An old backup
in the way is removed first. Directories are never backed up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.errors import ExitCode, SessionError
from rsyncd_py.roles.destination import dir_stat, make_path
from rsyncd_py.roles.metadata import quote
from rsyncd_py.roles.source_args import resolve_root_relative
from rsyncd_py.roles.transfer import Transfer
from rsyncd_py.wire import Log

if TYPE_CHECKING:
    from rsyncd_py.roles.delete import Deleter


class Backups:
    """Where backups go and how they are made, for one session."""

    def __init__(self, t: Transfer) -> None:
        self.t = t
        opts = t.opts
        self.enabled = opts.make_backups > 0
        self.suffix = (opts.backup_suffix or "").encode("utf-8", "surrogateescape")
        self.directory: bytes | None = None
        if opts.backup_dir:  # relative to the destination directory, as rsync's cwd is
            raw = opts.backup_dir.encode("utf-8", "surrogateescape")
            directory = resolve_root_relative(b"" if raw.startswith(b"/") else t.dest, raw)
            if directory is None:
                raise SessionError(
                    f"rsync: [receiver] --backup-dir escapes the served tree: {opts.backup_dir}",
                    ExitCode.RERR_FILESELECT,
                )
            self.directory = directory

    def is_backup_name(self, rel: bytes) -> bool:
        """delete.c is_backup_file: a name --delete leaves alone (no --backup-dir)."""
        return self.directory is None and bool(self.suffix) and rel.endswith(self.suffix)

    def backup_path(self, rel: bytes) -> bytes:
        """backup.c get_backup_name: the root-relative path of `rel`'s backup."""
        if self.directory is None:
            return self.t.join(rel) + self.suffix
        return (self.directory + b"/" if self.directory else b"") + rel + self.suffix

    async def make(
        self, path: bytes, rel: bytes, st: Stat, deleter: Deleter, *, keep: bool
    ) -> bool:
        """backup.c make_backup: keep `path` (named `rel` for the client) as its backup.

        With `keep` a regular file is hard-linked (it is about to be replaced, not
        removed); otherwise the entry is moved. Returns False (reported) on failure.
        """
        t = self.t
        target = self.backup_path(rel)
        if t.dry_run:
            return True
        for attempt in range(2):
            try:
                if self.directory is not None and b"/" in target:
                    # backup.c make_bak_dir: the backup's directories, made as needed
                    parent = target.rpartition(b"/")[0]
                    await make_path(t.fs, parent, dir_stat(t.umask, t.owner))
                if keep and st.is_file():
                    await t.fs.link(target, path)
                else:
                    await t.fs.rename(path, target)
                return True
            except FsError as exc:
                old = await self._lstat(target)
                if attempt or old is None:
                    t.wire.rprintf(
                        Log.ERROR_XFER,
                        f"rsync: [generator] keep_backup failed: {quote(path)} -> "
                        f"{quote(target)}: {exc.strerror} ({exc.errno})\n",
                    )
                    return False
                if not await deleter.remove_backup(target, old):
                    return False
        return False

    async def _lstat(self, path: bytes) -> Stat | None:
        try:
            return await self.t.fs.lstat(path)
        except FsError:
            return None
