"""--files-from: the names a transfer takes instead of walking its source arguments.

Mirrors rsync's options.c (opening the list), io.c read_line and
forward_filesfrom_data, util1.c sanitize_path and flist.c send_file_list's use of them.
Where the list comes from decides who reads it and how it travels:

- pull, the client's list (``--files-from=-``, from ``--files-from=FILE`` on the
  client): the client forwards it in-band, NUL-terminated names ending with an empty
  one; from protocol 31 inside MSG_DATA, below it unframed, which at protocol 30 means
  between the multiplexed filter list and the multiplexed rest (`read_filter_frames`);
- pull, a list on the server (``--files-from=PATH`` from ``host:PATH``): read from the
  served file system; comments (# and ;) and empty lines are skipped;
- push, a list on the server: this side (the receiver) forwards it to the client, the
  sender, as forward_filesfrom_data does -- CR/LF become NULs unless --from0, then the
  end marker -- unframed below protocol 31;
- push, the client's list: the client reads it itself; the server sees only -R.

A server-side list is read whole by the session before the setup exchange, through a
read-only view of the served file system, so a missing one ends the session the way
rsync's option parser does. Names are cleaned as the sender's sanitize_path cleans
them: never absolute, never above the source directory.
"""

from __future__ import annotations

import errno
import os
from typing import Final

from rsyncd_py.fs.base import FileSystem, FsError, FsProvider
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import MPLEX_BASE, MSG_DATA
from rsyncd_py.protocol.errors import ExitCode, ProtocolError, SessionError
from rsyncd_py.protocol.filters import read_filter_list
from rsyncd_py.protocol.options import OptionError, ServerOptions
from rsyncd_py.roles.source_args import resolve_root_relative
from rsyncd_py.wire import Wire

MAX_LIST_BYTES: Final = 256 << 20  # a server-side list is read whole: bound it
_MAX_FRAME_LEN: Final = 0xFFFFFF


def sanitize_name(name: bytes, *, keep_dot_dirs: bool) -> bytes:
    """util1.c sanitize_path(fbuf, fbuf, "", 0, ...): relative, no ".." above the start.

    A leading or doubled slash is dropped; ".." removes the component before it (or
    nothing); "." components are dropped unless `keep_dot_dirs` (-R keeps them, for
    the "/./" marker); a trailing slash stays; nothing left is ".".
    """
    if not keep_dot_dirs:
        while name.startswith(b"./"):
            name = name[2:]
    out: list[bytes] = []
    parts = name.split(b"/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if not part:
            continue
        if not keep_dot_dirs and part == b".":
            continue
        if part == b"..":
            if out:
                out.pop()
            continue
        out.append(part + (b"" if last else b"/"))
    return b"".join(out) or b"."


def local_names(data: bytes, *, eol_nulls: bool) -> list[bytes]:
    """io.c read_line with RL_DUMP_COMMENTS over a whole list file, up to its end.

    Names end at NUL (--from0) or at CR/LF; empty lines and lines starting with # or ;
    are skipped.
    """
    if not eol_nulls:
        data = data.replace(b"\r", b"\n")
    lines = data.split(b"\0" if eol_nulls else b"\n")
    return [line for line in lines if line and line[:1] not in (b"#", b";")]


def forwarded(data: bytes, *, eol_nulls: bool) -> bytes:
    """io.c forward_filesfrom_data over a whole list: what the sender receives.

    CR and LF become NULs unless --from0; runs of NULs become one and leading ones go
    (no empty name before the end); the end marker makes the stream end with an empty
    name. Comments are not removed: the remote reader does not skip them either.
    """
    if not eol_nulls:
        data = data.replace(b"\r", b"\0").replace(b"\n", b"\0")
    names = [name for name in data.split(b"\0") if name]
    return b"".join(name + b"\0" for name in names) + b"\0"


def read_wire_name(buf: ReceiveBuffer) -> bytes | None:
    """read_line(RL_EOL_NULLS) from the socket: one name (b"" ends the list), or None."""
    data = buf.peek(len(buf)) or b""
    end = data.find(b"\0")
    if end < 0:
        if len(data) > MAX_LIST_BYTES:
            raise ProtocolError("files-from name without an end", ExitCode.RERR_PROTOCOL)
        return None
    buf.skip(end + 1)
    return data[:end]


async def read_client_lists(
    wire: Wire, opts: ServerOptions, protocol: int
) -> tuple[list[bytes], list[bytes] | None]:
    """A pull's first reads: the client's filter rules, then its --files-from names.

    The names come from the client (``--files-from=-``), from the list the session
    read on our side, or there are none (None).
    """
    if opts.files_from != "-":
        rules = await wire.read(lambda buf: read_filter_list(buf, protocol))
        if opts.files_from_list is None:
            return rules, None
        return rules, local_names(opts.files_from_list, eol_nulls=bool(opts.eol_nulls))
    if protocol == 30:  # framed rules, unframed names, then multiplexed
        rules = await wire.read(lambda buf: read_filter_frames(buf, protocol))
        names = await read_client_names(wire)
        wire.start_multiplex_in()
    else:
        rules = await wire.read(lambda buf: read_filter_list(buf, protocol))
        names = await read_client_names(wire)
    return rules, names


async def read_client_names(wire: Wire) -> list[bytes]:
    """The names a client forwards (``--files-from=-``), up to the empty one."""
    names: list[bytes] = []
    while name := await wire.read(read_wire_name):
        names.append(name)
    return names


def read_filter_frames(buf: ReceiveBuffer, protocol: int) -> list[bytes] | None:
    """The client's filter list from whole MSG_DATA frames of an unmultiplexed buffer.

    At protocol 30 a client forwarding its --files-from list multiplexes its output
    except the list itself: the filter list's frames are read here, frame by frame, so
    that nothing past them is consumed; then the names, raw; then multiplexing starts.
    Returns None (consuming nothing) until the list is whole.
    """
    payload = ReceiveBuffer()
    offset = 0
    while True:
        header = buf.peek(4, offset)
        if header is None:
            return None
        word = int.from_bytes(header, "little")
        tag, length = (word >> 24) - MPLEX_BASE, word & _MAX_FRAME_LEN
        if tag != MSG_DATA:
            raise ProtocolError(f"unexpected tag {tag} before the files-from list")
        data = buf.peek(length, offset + 4)
        if data is None:
            return None
        payload.extend(data)
        offset += 4 + length
        rules = read_filter_list(payload, protocol)
        if rules is not None:
            if len(payload):
                raise ProtocolError("files-from list inside the filter list's frame")
            buf.skip(offset)
            return rules


async def read_server_list(provider: FsProvider, opts: ServerOptions) -> bytes:
    """options.c: open the server-side list (a path in the served tree) and read it.

    Raises OptionError with rsync's text ("failed to open files-from file ...") when
    it cannot be read, before any protocol byte, as rsync's option parser does.
    """
    assert opts.files_from is not None
    shown = opts.files_from
    path = resolve_root_relative(b"", shown.encode("utf-8", "surrogateescape"))
    if path is None:
        raise OptionError(f"failed to open files-from file {shown}: Permission denied")
    fs = await provider.open_session(writable=False)
    try:
        st = await fs.lstat(path)
        if st is not None and st.is_dir():
            raise FsError(errno.EISDIR, "Is a directory", path)
        if st is not None and st.size > MAX_LIST_BYTES:
            raise FsError(errno.EFBIG, "File too large", path)
        reader = await fs.open_read(path)
        try:
            return b"".join([chunk async for chunk in reader.stream()])
        finally:
            await reader.close()
    except FsError as exc:
        reason = exc.strerror or str(exc)
        raise OptionError(f"failed to open files-from file {shown}: {reason}") from exc
    finally:
        await fs.close(True)


async def source_dir(fs: FileSystem, base: bytes, arg: bytes | None) -> bytes:
    """flist.c send_file_list: the names of a --files-from list are below its first arg.

    Returns the root-relative directory, or ends the session as rsync's failed
    change_dir does (exit 3).
    """
    if arg is None:
        return base
    path = resolve_root_relative(base, arg)
    shown = arg.decode("utf-8", "surrogateescape")
    if path is None:
        raise SessionError(
            f"rsync: [sender] path escapes the served tree: {shown}", ExitCode.RERR_FILESELECT
        )
    try:
        st = await fs.lstat(path)
    except FsError:
        st = None
    if st is None or not st.is_dir():
        err = errno.ENOENT if st is None else errno.ENOTDIR
        raise SessionError(
            f'rsync: [sender] change_dir "/{path.decode("utf-8", "surrogateescape")}" failed: '
            f"{os.strerror(err)} ({err})",
            ExitCode.RERR_FILESELECT,
        )
    return path


def send_list(wire: Wire, opts: ServerOptions) -> None:
    """main.c do_server_recv + io.c start_filesfrom_forwarding: our list to the sender.

    Below protocol 31 it travels outside the multiplexing (the client reads it raw
    until its file list is sent).
    """
    assert opts.files_from_list is not None
    data = forwarded(opts.files_from_list, eol_nulls=bool(opts.eol_nulls))
    if wire.protocol < 31:
        wire.write_unframed(data)
    else:
        wire.write(data)
