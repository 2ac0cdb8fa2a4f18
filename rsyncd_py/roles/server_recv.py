"""A push, end to end on the server: rsync's main.c do_server_recv and do_recv.

Order: read the filter rules (when needed) and the first file list -- with incremental
recursion, when it holds a single entry, one more list, to tell a one-file transfer
from a directory -- settle the destination (get_local_name), then run the generator and
the receiver as two tasks until both finish the phase protocol; the generator's last
NDX_DONE is the goodbye. rsync forks here; we run the two halves as asyncio tasks in
one TaskGroup, so a failure in either cancels the other and surfaces as the session's
error.
"""

from __future__ import annotations

import asyncio

from rsyncd_py.fs.base import FileSystem, FsError
from rsyncd_py.protocol.constants import (
    IOERR_DEL_LIMIT,
    IOERR_GENERAL,
    IOERR_VALID_MASK,
    IOERR_VANISHED,
    MSG_IO_ERROR,
    MSG_NO_SEND,
    NDX_DONE,
    NDX_FLIST_EOF,
    NDX_FLIST_OFFSET,
)
from rsyncd_py.protocol.errors import ExitCode, ProtocolError, RemoteProtocolError, SessionError
from rsyncd_py.protocol.filters import FilterSet, server_filter_rules
from rsyncd_py.protocol.flist_sort import prune_empty_dirs
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.roles import files_from
from rsyncd_py.roles.alt_dest import resolve_basis_dirs, warn_missing_dirs
from rsyncd_py.roles.delete import Deleter
from rsyncd_py.roles.destination import get_local_name, join_path, resolve_path
from rsyncd_py.roles.flist_recv import ListReceiver, receive_filter_rules
from rsyncd_py.roles.generator import Generator
from rsyncd_py.roles.hardlinks import is_hlinked
from rsyncd_py.roles.receiver import Receiver
from rsyncd_py.roles.transfer import Finished, Transfer
from rsyncd_py.wire import Wire


async def do_server_recv(
    wire: Wire,
    fs: FileSystem,
    opts: ServerOptions,
    neg: Negotiated,
    *,
    umask: int,
    owner: tuple[int, int],
) -> int:
    """Rsync main.c:do_server_recv: receive a pushed tree into `fs`; return the exit code."""
    args = list(opts.args)
    base, _ = resolve_path(args.pop(0)) if args else (b"", False)
    dest_arg = args[0] if args else None
    if dest_arg is not None:
        # refuse an escaping or read-only destination before reading anything
        _check_writable(fs, join_path(base, resolve_path(dest_arg)[0]), dest_arg)

    rules = await receive_filter_rules(wire, opts, neg.protocol)
    if opts.files_from_list is not None:  # a list on our side: the sender reads it
        files_from.send_list(wire, opts)
        await wire.flush()
    incoming = ListReceiver(wire, opts, neg)
    received = await incoming.receive_first(rules)
    t = Transfer(
        wire=wire,
        fs=fs,
        opts=opts,
        neg=neg,
        incoming=incoming,
        umask=umask,
        owner=owner,
        filters=_filter_set(rules, opts, neg.protocol),
        acls=received.acls,
        xattrs=received.xattrs,
    )
    if opts.prune_empty_dirs:
        prune_empty_dirs(received.entries, lambda name: _filter_keeps(t.filters, name))
    t.note_io_error(received.io_error)
    if t.inc_recurse and incoming.lists.file_total == 1:
        await _receive_additional_list(t)
    t.io_error |= wire.io_error
    wire.on_message(MSG_IO_ERROR, lambda payload: _peer_io_error(t, payload))
    if opts.preserve_hard_links or t.inc_recurse:
        wire.on_message(MSG_NO_SEND, lambda payload: _peer_no_send(t, payload))
    dest = await get_local_name(
        fs,
        wire,
        received.entries,
        base,
        dest_arg,
        dry_run=bool(opts.dry_run),
        mkpath=bool(opts.mkpath_dest_arg),
        announce=t.name_level >= 1 or bool(opts.stdout_format_has_i),
        umask=umask,
        owner=owner,
        file_total=incoming.lists.file_total,
    )
    t.dest = dest.directory
    t.local_name = dest.local_name
    if dest.created and t.dry_run:
        t.dry_run += 1  # the destination does not exist: nothing in it does either
    if opts.basis_dirs:  # main.c check_alt_basis_dirs, now that the destination is known
        t.basis_dirs = resolve_basis_dirs(t)
        await warn_missing_dirs(t)
    await do_recv(t)
    return exit_code_for(t)


async def _receive_additional_list(t: Transfer) -> None:
    """flist.c recv_additional_file_list: the next list (or NDX_FLIST_EOF), read now."""
    ndx = await t.wire.read(lambda buf: read_item(buf, t.ndx_in.read))
    if ndx == NDX_FLIST_EOF:
        t.lists.eof = True
    elif ndx <= NDX_FLIST_OFFSET:
        _, io_error = await t.incoming.receive_sub(NDX_FLIST_OFFSET - ndx)
        t.note_io_error(io_error)
    else:
        raise ProtocolError(f"Invalid file index: {ndx} ({NDX_DONE} - 0) [receiver]")


async def do_recv(t: Transfer) -> None:
    """Rsync main.c:do_recv: the generator and the receiver, side by side."""
    deleter = Deleter(t)
    generator = Generator(t, deleter)
    receiver = Receiver(t, deleter)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(receiver.recv_files(), name="receiver")
            group.create_task(generator.generate_files(), name="generator")
    except BaseExceptionGroup as failures:
        # the first failure ended the session; the other task was only cancelled
        raise _first_failure(failures) from None


def _first_failure(group: BaseExceptionGroup) -> BaseException:
    """The session's error among a TaskGroup's: a SessionError if there is one."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, SessionError):
            return exc
    return leaves[0]


def _check_writable(fs: FileSystem, path: bytes, shown: str) -> None:
    """Refuse a push into a place the file system keeps read-only (the store's snapshots).

    Real rsync would fail on each file there (exit 23) or on making the directory;
    this fails once, up front, saying why. File systems without `check_writable`
    (it is not part of the contract) find out file by file.
    """
    check = getattr(fs, "check_writable", None)
    if check is None:
        return
    try:
        check(path)
    except FsError as exc:
        raise SessionError(
            f'rsync: [Receiver] ERROR: cannot push into "{shown}": {exc.strerror} ({exc.errno})',
            ExitCode.RERR_FILEIO,
        ) from exc


def _peer_io_error(t: Transfer, payload: bytes) -> None:
    """io.c read_a_msg MSG_IO_ERROR: the sender had an I/O error (it stops deletion)."""
    if len(payload) != 4:
        raise RemoteProtocolError(
            f"invalid multi-message {MSG_IO_ERROR}:{len(payload)}", ExitCode.RERR_STREAMIO
        )
    t.io_error |= int.from_bytes(payload, "little") & IOERR_VALID_MASK


def _peer_no_send(t: Transfer, payload: bytes) -> None:
    """io.c read_a_msg MSG_NO_SEND: the sender could not open a file we asked for.

    For a hard-linked file the generator must pick another leader for its group; with
    incremental recursion it also counts the file as finished (its list may be freed).
    """
    if len(payload) != 4:
        raise RemoteProtocolError(
            f"invalid multi-message {MSG_NO_SEND}:{len(payload)}", ExitCode.RERR_STREAMIO
        )
    ndx = int.from_bytes(payload, "little", signed=True)
    entry = t.lists.lookup(ndx) if ndx >= 0 else None
    if entry is not None and (t.inc_recurse or is_hlinked(entry)):
        t.to_generator.put_nowait(Finished(ndx, ok=False))


def exit_code_for(t: Transfer) -> int:
    """cleanup.c _exit_cleanup: the exit code of a session that ran to its end."""
    io_error = t.io_error
    code = ExitCode.RERR_OK
    if io_error & IOERR_DEL_LIMIT:
        code = ExitCode.RERR_DEL_LIMIT
    if io_error & IOERR_VANISHED:
        code = ExitCode.RERR_VANISHED
    if io_error & IOERR_GENERAL or t.wire.got_xfer_error:
        code = ExitCode.RERR_PARTIAL
    return int(code)


def _filter_keeps(filters: FilterSet | None, name: bytes) -> bool:
    """Whether the rules name directory `name` (exclude.c is_excluded, ALL_FILTERS)."""
    if filters is None:
        return False
    return filters.excluded(name, True) or filters.protected(name, True)


def _filter_set(rules: list[bytes], opts: ServerOptions, protocol: int) -> FilterSet | None:
    """The rules deletion honours: our argv's, the client's, and -C's (exclude.c)."""
    parsed = server_filter_rules(
        rules,
        protocol,
        am_sender=False,
        cvs_exclude=bool(opts.cvs_exclude),
        delete_excluded=bool(opts.delete_excluded),
        filter_args=opts.filter_args,
    )
    if not parsed:
        return None
    return FilterSet(parsed, protocol=protocol, delete_excluded=bool(opts.delete_excluded))
