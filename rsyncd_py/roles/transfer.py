"""The state one push (server-as-receiver) session shares between its parts.

rsync keeps this in globals; here it is one object the generator task, the receiver
task and their helpers all hold. Everything fixed for the session (options, negotiated
protocol, where it lands) is set before the two tasks start; the mutable parts are the
file lists (`incoming`: the receiver's reader of them, whose `lists` is the receiver's
view of the lists not freed yet), the io_error bits, the deletion counters and the
channel from the receiver to the generator (`to_generator`), which carries what rsync's
receiver sends its generator over a pipe: "phase done", "redo this index", "this file
is done" (hard-linked files, and every transfer with incremental recursion) and, with
incremental recursion, "another file list arrived".

Per-entry bookkeeping uses `FileEntry.flags` bits, named as rsync names them.
"""

from __future__ import annotations

import asyncio
import stat as stat_mod
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FileSystem
from rsyncd_py.protocol.acls import AclReceiver
from rsyncd_py.protocol.constants import IOERR_VALID_MASK
from rsyncd_py.protocol.filters import FilterSet
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.flist_chain import FileLists
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ndx import NdxDecoder, NdxEncoder
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.stats import DeleteStats
from rsyncd_py.protocol.xattrs import XattrReceiver
from rsyncd_py.roles.acl_xattr import Receiving
from rsyncd_py.wire import Wire

if TYPE_CHECKING:
    from rsyncd_py.roles.flist_recv import ListReceiver

# generator/receiver bits of FileEntry.flags (rsync.h FLAG_*; the XMIT-derived ones are
# in protocol/flist.py)
FLAG_FILE_SENT = 1 << 1  # requested (hard links) / failed once: the next request is a redo
FLAG_DIR_CREATED = 1 << 8  # the destination directory was created for this "." entry
FLAG_MISSING_DIR = 1 << 4  # a directory we did not (or, in a dry run, would) create
FLAG_SKIP_HLINK = 1 << 3  # a hard-linked member that was skipped
FLAG_HLINKED = 1 << 5  # a member of a hard-link group (of two or more)
FLAG_HLINK_FIRST = 1 << 6  # the group's first member (later: its leader)
FLAG_HLINK_LAST = 1 << 7  # the group's last member (the one whose data travels)
FLAG_HLINK_DONE = 1 << 9  # up to date, created or linked

ACCESSPERMS = 0o777
CHMOD_BITS = 0o7777


@dataclass(frozen=True, slots=True)
class Redo:
    """Receiver -> generator: request `ndx` again with full-length sums (MSG_REDO)."""

    ndx: int


@dataclass(frozen=True, slots=True)
class Finished:
    """Receiver (or sender) -> generator: hard-linked `ndx` is in place, or never will be.

    rsync's MSG_SUCCESS (`ok`) and MSG_NO_SEND for hard-linked files.
    """

    ndx: int
    ok: bool


@dataclass(frozen=True, slots=True)
class PhaseDone:
    """Receiver -> generator: the receiver finished a phase (rsync's MSG_DONE)."""


@dataclass(frozen=True, slots=True)
class ListsChanged:
    """Receiver -> generator: a file list (or NDX_FLIST_EOF) arrived (flist forwarding)."""


Event = Redo | PhaseDone | Finished | ListsChanged


@dataclass
class Transfer:
    """Shared state of one push session (see the module docstring)."""

    wire: Wire
    fs: FileSystem
    opts: ServerOptions
    neg: Negotiated
    incoming: ListReceiver  # the file lists: its `lists` is the receiver's view
    dest: bytes = b""  # root-relative directory the names are relative to
    local_name: bytes | None = None  # single-file transfer to this root-relative path
    basis_dirs: list[bytes] = field(default_factory=list)  # --link/compare/copy-dest dirs
    umask: int = 0o022
    owner: tuple[int, int] = (0, 0)  # uid/gid new entries get when ownership is not kept
    filters: FilterSet | None = None  # what --delete must leave alone (None: nothing)
    io_error: int = 0
    deleted: DeleteStats = field(default_factory=DeleteStats)
    skipped_deletes: int = 0
    dry_run: int = 0  # rsync's dry_run counter: > 1 means the destination does not exist
    ndx_out: NdxEncoder = field(init=False)
    ndx_in: NdxDecoder = field(init=False)
    to_generator: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    attrs: Receiving = field(init=False)  # -A/-X: received ACLs and xattrs (acl_xattr.py)
    acls: AclReceiver | None = None  # the file list's ACL lists (-A)
    xattrs: XattrReceiver | None = None  # the file list's xattr sets (-X)

    def __post_init__(self) -> None:
        self.ndx_out = NdxEncoder(self.neg.protocol)
        self.ndx_in = NdxDecoder(self.neg.protocol)
        self.dry_run = self.opts.dry_run
        self.attrs = Receiving(self.opts, self.neg, self.acls, self.xattrs)

    # --- derived settings ----------------------------------------------------------

    @property
    def protocol(self) -> int:
        return self.neg.protocol

    @property
    def inc_recurse(self) -> bool:
        """CF_INC_RECURSE: the file lists come directory by directory."""
        return self.neg.inc_recurse

    @property
    def lists(self) -> FileLists[FileEntry]:
        """The receiver's view of the file lists not freed yet."""
        return self.incoming.lists

    @property
    def do_xfers(self) -> bool:
        return not self.opts.dry_run

    @property
    def dflt_perms(self) -> int:
        return ACCESSPERMS & ~self.umask

    @property
    def append_mode(self) -> int:
        """--append (1) or --append-verify (2); below protocol 30 both verify (compat.c)."""
        mode = self.opts.append_mode
        return 2 if mode == 1 and self.protocol < 30 else mode

    @property
    def whole_file(self) -> bool:
        """-W, or a "none" transfer checksum; a remote transfer defaults to deltas."""
        return self.opts.whole_file > 0 or self.neg.checksum == "none"

    @property
    def name_level(self) -> int:
        """Rsync's INFO_NAME level: -v gives 1, -vv 2, unless --info=name overrides."""
        level = min(self.opts.verbose, 2)
        for word in self.opts.info:
            for part in word.lower().split(","):
                if part.startswith("name"):
                    digits = part[4:]
                    level = int(digits) if digits.isdigit() else 1
        return level

    @property
    def attrs_report(self) -> bool:
        """Rsync's maybe_ATTRS_REPORT (generator.c generate_files): say "NAME is uptodate".

        At --info=name2 only. From protocol 29 the server itemizes, so only when the
        client's --log-format has no %i; below 29 a server never itemizes.
        """
        return self.protocol < 29 or not self.opts.stdout_format_has_i

    @property
    def delete_timing(self) -> str | None:
        return self.opts.delete_timing(self.protocol)

    def note_io_error(self, bits: int) -> None:
        if not self.opts.ignore_errors:
            self.io_error |= bits & IOERR_VALID_MASK

    # --- names -----------------------------------------------------------------------

    def path_of(self, entry: FileEntry) -> bytes:
        """The root-relative path where `entry` lives on our side."""
        if self.local_name is not None:
            return self.local_name
        return self.join(entry.name)

    def join(self, name: bytes) -> bytes:
        """The root-relative path of `name` (relative to the destination directory)."""
        if name == b".":
            return self.dest
        return self.dest + b"/" + name if self.dest else name

    def display_name(self, entry: FileEntry) -> bytes:
        """The name rsync prints for an entry (relative to the destination)."""
        return self.local_name.rsplit(b"/", 1)[-1] if self.local_name is not None else entry.name

    # --- time ------------------------------------------------------------------------

    def keeps_time(self, entry: FileEntry) -> bool:
        """Whether this entry's mtime is preserved (generator.c itemize keep_time)."""
        if not self.opts.preserve_mtimes:
            return False
        if stat_mod.S_ISDIR(entry.mode):
            return not self.opts.omit_dir_times
        if stat_mod.S_ISLNK(entry.mode):
            return not self.opts.omit_link_times
        return True

    def same_time(self, sec1: int, nsec1: int, sec2: int, nsec2: int) -> bool:
        """util1.c same_time, honouring --modify-window."""
        window = self.opts.modify_window
        if window == 0:
            return sec1 == sec2
        if window < 0:
            return sec1 == sec2 and nsec1 == nsec2
        return abs(sec1 - sec2) <= window


def now_ns() -> int:
    return time.time_ns()
