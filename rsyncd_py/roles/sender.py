"""A pull, end to end on the server: rsync's main.c do_server_sender and sender.c send_files.

Theory of operation. The client is the generator and receiver; we are the sender.

1. Read the client's filter rules (a receiving client always sends them).
2. Expand wildcards in the source arguments (`globbing.py`) and stream the file list
   (`flist_build.py`), then its end marker, the uid/gid name lists and, below protocol
   30, the io_error int. An empty list ends the session at once: the client skips its
   whole transfer and goodbye (rsync-protocol.md A.9). With incremental recursion the
   first list holds the top level only (names inline, no id lists) and every directory
   follows as a list of its own, sent ahead of the generator's requests while we serve
   them (`flist_extra.py`); each NDX_DONE then first frees the oldest list, echoed
   without ending a phase, until the last list is gone.
3. Answer the generator's records in order (`send_files`): an item without
   ITEM_TRANSFER is echoed; a transfer request brings the block sums of the client's
   basis file, and we answer with the echoed record, the echoed sum head, the delta
   (`delta_send.py`) and the whole-file checksum; a file that cannot be opened gets
   MSG_NO_SEND. NDX_DEL_STATS is echoed. Each NDX_DONE ends a phase (main, redo, and
   from protocol 29 the delay-updates phase) and is echoed while phases remain; after
   the last we send our own NDX_DONE.
4. The totals the client prints (main.c handle_stats), then read_final_goodbye: one
   NDX_DONE, and from protocol 31 a second one after our echo.

The sender never waits on its own writes: the Wire's reader task keeps receiving, and
our buffered output is flushed whenever we are about to wait for the client (as rsync's
I/O loop flushes before it blocks on input).

State: `phase` (0..max_phase), `io_error` (IOERR_* bits), `lists` (the sorted lists
not freed yet: `FileLists`, which maps an ndx to its entry), the per-direction ndx
codecs.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TypeVar

from rsyncd_py.fs.base import FileReader, FileSystem, FsError
from rsyncd_py.protocol import checksums, tokens
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import (
    IOERR_DEL_LIMIT,
    IOERR_GENERAL,
    IOERR_VANISHED,
    ITEM_IS_NEW,
    ITEM_TRANSFER,
    MSG_ERROR_EXIT,
    MSG_IO_ERROR,
    MSG_NO_SEND,
    MSG_SUCCESS,
    NDX_DEL_STATS,
    NDX_DONE,
)
from rsyncd_py.protocol.errors import ExitCode, ProtocolError, RemoteProtocolError, SessionError
from rsyncd_py.protocol.filters import FilterSet, server_filter_rules
from rsyncd_py.protocol.flist import FlistEncoder
from rsyncd_py.protocol.flist_chain import FileLists
from rsyncd_py.protocol.flist_sort import entry_key
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ints import pack_int, read_item
from rsyncd_py.protocol.itemize import ItemRecord, pack_item, read_ndx_and_attrs
from rsyncd_py.protocol.match import BlockSums
from rsyncd_py.protocol.ndx import NdxDecoder, NdxEncoder
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.stats import DeleteStats, TransferStats
from rsyncd_py.protocol.sums import SumHead, pack_sum_head, read_sum_head
from rsyncd_py.roles import acl_xattr, files_from
from rsyncd_py.roles.delta_send import DeltaSender
from rsyncd_py.roles.flist_build import FileListBuilder, SendEntry
from rsyncd_py.roles.flist_extra import MIN_FILECNT_LOOKAHEAD, ExtraLists, IncrementalBuilder
from rsyncd_py.roles.flist_recv import flist_options
from rsyncd_py.roles.globbing import expand_args
from rsyncd_py.roles.id_lists import inline_acl_name, send_id_lists
from rsyncd_py.roles.sender_remove import SourceRemover
from rsyncd_py.roles.source_args import resolve_root_relative
from rsyncd_py.wire import Log, PeerExit, Wire

T = TypeVar("T")

# The client asks for files in list order. After two requests at most AHEAD_GAP apart,
# the next AHEAD_FILES entries of the list are named to a file system that reads ahead
# (the store fetches the small ones in one job instead of one job per file).
AHEAD_FILES = 64
AHEAD_GAP = 4

# Options the sender refuses (rsync's "The server does not support --X" text, exit 1):
# symlink following: referents may lie outside the served tree (an absolute target
# names a path on the machine that was backed up).
UNSUPPORTED_WHEN_SENDING = (
    "copy-links",
    "copy-dirlinks",
    "copy-unsafe-links",
)


async def send_files(wire: Wire, fs: FileSystem, opts: ServerOptions, neg: Negotiated) -> int:
    """Rsync main.c:do_server_sender: serve one pull from `fs`; return the exit code."""
    return await Sender(wire, fs, opts, neg).run()


def recorded_digest(reader: object, name: str) -> bytes | None:
    """The whole-file digest `name` the file system recorded, in rsync's byte order.

    A FileReader may carry ``digests`` -- {algorithm: digest as the hash library's
    ``digest()`` returns it} recorded when the file was written (the store's
    `StoreFileReader.digests`: xxh128 always, md5 when enabled). Only unseeded sums can
    be reused: every whole-file and -c sum from protocol 30 on.
    """
    digests = getattr(reader, "digests", None)
    if not isinstance(digests, dict):
        return None
    digest = digests.get(name)
    if not isinstance(digest, bytes) or len(digest) != checksums.digest_len(name):
        return None
    return digest[::-1] if name.startswith("xxh") else digest


class Sender:
    """sender.c's state for one pull session (see the module docstring)."""

    def __init__(self, wire: Wire, fs: FileSystem, opts: ServerOptions, neg: Negotiated) -> None:
        self.wire = wire
        self.fs = fs
        self.opts = opts
        self.neg = neg
        self.protocol = neg.protocol
        self.max_phase = 2 if neg.protocol >= 29 else 1
        self.phase = 0
        self.io_error = 0
        # the lists sent and not freed yet (one, indexed from 0, without inc-recurse)
        self.lists: FileLists[SendEntry] = FileLists(incremental=neg.inc_recurse)
        self.extra: ExtraLists | None = None  # inc-recurse: the lists still to come
        self.builder: FileListBuilder | None = None
        self.ndx_out = NdxEncoder(neg.protocol)
        self.ndx_in = NdxDecoder(neg.protocol)
        self.stats = TransferStats()
        encoder = tokens.new_token_encoder(
            neg.compression, opts.do_compression_level, protocol=neg.protocol
        )
        self.delta = DeltaSender(wire, neg, encoder)
        self.xfer_sum_len = checksums.digest_len(neg.checksum)
        # --append (1) / --append-verify (2); below protocol 30 both verify (compat.c)
        self.append_mode = 2 if opts.append_mode == 1 and neg.protocol < 30 else opts.append_mode
        self._sent: set[int] = set()  # indexes sent once: a second request is the redo
        self.remover = (  # --remove-source-files: what the client has, we remove
            SourceRemover(
                wire, fs, opts, lambda ndx: self.lists.find(ndx, "successful_send", "sender")[1]
            )
            if opts.remove_source_files
            else None
        )
        # the file list's encoder, kept for its ACL and xattr lists (-A/-X)
        self.flist_encoder = FlistEncoder(flist_options(opts, neg))
        # StoreFileSystem.read_ahead (not in the FileSystem contract), and what it covers
        self._read_ahead: Callable[[list[bytes]], None] | None = getattr(fs, "read_ahead", None)
        self._last_request = -1
        self._ahead_end = 0

    async def run(self) -> int:
        """main.c do_server_sender, after the setup exchange."""
        self.wire.on_message(MSG_ERROR_EXIT, self._peer_exit)
        if self.remover is not None:
            self.wire.on_message(MSG_SUCCESS, self.remover.on_success)
        if reason := self.opts.unsupported_reason(UNSUPPORTED_WHEN_SENDING):
            raise SessionError(f"rsync: {reason}", ExitCode.RERR_SYNTAX)
        rules, names = await files_from.read_client_lists(self.wire, self.opts, self.protocol)
        if not await self.send_file_list(rules, names):
            await self.wire.flush()
            return self.exit_code()  # the client expects nothing more
        await self.send_files_loop()
        await self.wire.flush()
        self.handle_stats()
        if self.protocol >= 24:
            await self.read_final_goodbye()
        if self.remover is not None:
            await self.remover.remove_pending()  # the last ones came with the goodbye
        await self.wire.flush()
        return self.exit_code()

    # --- flist.c send_file_list -------------------------------------------------------

    async def send_file_list(self, rules: list[bytes], names: list[bytes] | None = None) -> bool:
        """Rsync flist.c:send_file_list; returns False when the list is empty.

        With --files-from the `names` are the sources, below the first argument.
        """
        opts, neg, wire = self.opts, self.neg, self.wire
        started = time.monotonic()
        args = [a.encode("utf-8", "surrogateescape") for a in opts.args]
        base = resolve_root_relative(b"", args[0]) if args else b""
        if base is None:
            raise SessionError(
                f"rsync: [sender] path escapes the served tree: {opts.args[0]}",
                ExitCode.RERR_FILESELECT,
            )
        sources = args[1:]
        if names is not None:
            base = await files_from.source_dir(self.fs, base, sources[0] if sources else None)
            keep_dots = opts.relative_paths > 0
            sources = [files_from.sanitize_name(name, keep_dot_dirs=keep_dots) for name in names]
        else:
            if not sources and (opts.recurse or opts.xfer_dirs > 0 or opts.list_only):
                sources = [b"."]
            sources = await expand_args(self.fs, base, sources, shell=opts.protect_args != 2)

        options = flist_options(opts, neg)
        encoder = self.flist_encoder
        incremental = neg.inc_recurse
        if incremental:
            encoder.start_list(1)
            if encoder.acls is not None:  # ACL ids are named inline, first sight only
                encoder.acls.add_name = inline_acl_name(encoder)
        builder = self.builder = (IncrementalBuilder if incremental else FileListBuilder)(
            wire,
            self.fs,
            options,
            recurse=bool(opts.recurse),
            xfer_dirs=opts.xfer_dirs > 0 or bool(opts.recurse),
            implied_dirs=bool(opts.implied_dirs),
            filters=self._filter_set(rules),
            emit=lambda sent: wire.write(
                encoder.encode(
                    sent.entry, hlink_key=sent.hlink_key, acl=sent.st.acl, xattrs=sent.st.xattrs
                )
            ),
            recorded_digest=recorded_digest,
            file_checksum=neg.file_checksum,
            missing_args=opts.missing_args,
        )
        await builder.build(base, sources)
        built = time.monotonic()
        self.io_error |= builder.io_error
        io_error = 0 if opts.ignore_errors else self.io_error
        wire.write(encoder.end(io_error if neg.safe_flist else 0))
        if not opts.numeric_ids and not incremental:
            wire.write(send_id_lists(encoder, builder.entries))
        if self.protocol < 30:
            wire.write(pack_int(io_error))
        elif io_error and not neg.safe_flist:
            wire.send_msg(MSG_IO_ERROR, pack_int(io_error))
        if isinstance(builder, IncrementalBuilder):
            self.extra = ExtraLists(
                wire,
                builder,
                encoder,
                self.ndx_out,
                safe_flist=neg.safe_flist,
                ignore_errors=bool(opts.ignore_errors),
            )
            self.lists = self.extra.lists
            self.extra.add_first(builder.take_entries())
            await self.extra.start()
        else:
            protocol = self.protocol
            self.lists.add(sorted(builder.entries, key=lambda s: entry_key(s.entry, protocol)))
        await wire.flush()
        self.stats.flist_buildtime_ms = max(1, int((built - started) * 1000))
        self.stats.flist_xfertime_ms = int((time.monotonic() - built) * 1000)
        return bool(self.lists.file_total)

    def _filter_set(self, rules: list[bytes]) -> FilterSet | None:
        """The rules the sender honours: our argv's, the client's, and -C's (exclude.c)."""
        parsed = server_filter_rules(
            rules,
            self.protocol,
            am_sender=True,
            cvs_exclude=bool(self.opts.cvs_exclude),
            filter_args=self.opts.filter_args,
        )
        return FilterSet(parsed, protocol=self.protocol) if parsed else None

    # --- sender.c send_files ------------------------------------------------------------

    async def send_files_loop(self) -> None:
        """Rsync sender.c:send_files: answer the generator until its last NDX_DONE."""
        save_io_error = self.io_error
        extra = self.extra
        while True:
            if self.remover is not None:
                await self.remover.remove_pending()
            if extra is not None:
                await extra.send(MIN_FILECNT_LOOKAHEAD)
            record = await self._read(self._read_record, idle_lists=True)
            if isinstance(record, int):
                if record != NDX_DONE:
                    self._invalid_index(record)
                if extra is not None and len(self.lists) and extra.free_first():
                    self.wire.write(self.ndx_out.encode(NDX_DONE))  # a list freed, not a phase
                    continue
                self.phase += 1
                if self.phase > self.max_phase:
                    break
                self.wire.write(self.ndx_out.encode(NDX_DONE))
                continue
            if extra is not None:
                await extra.send(MIN_FILECNT_LOOKAHEAD)
            sent = self._entry_for(record)
            if sent is None:
                continue  # a protocol-29 keep-alive
            answer = await self._xattr_request(record, sent)
            if not record.iflags & ITEM_TRANSFER or not self.opts.do_xfers:
                self._echo(record, answer)
                continue
            if self.phase == 2:
                raise ProtocolError("got transfer request in phase 2 [sender]")
            await self.send_one(record, sent, answer)
        if self.builder is not None:
            self.io_error |= self.builder.io_error  # incremental lists' errors too
        if self.io_error != save_io_error and self.protocol >= 30:
            self.wire.send_msg(MSG_IO_ERROR, pack_int(self.io_error))
        self.wire.write(self.ndx_out.encode(NDX_DONE))

    def _entry_for(self, record: ItemRecord) -> SendEntry | None:
        """rsync.c read_ndx_and_attrs' checks: the entry a record names (None: keep-alive)."""
        ndx = record.ndx
        if self.extra is not None:
            flist, sent = self.lists.find(ndx, "read_ndx_and_attrs", "sender")
            self.extra.note_record(flist)
            return sent
        files = self.lists.first.entries
        if self.protocol < 30 and ndx == len(files) and record.iflags == ITEM_IS_NEW:
            return None
        if not 0 <= ndx < len(files):
            self._invalid_index(ndx)
        return files[ndx]

    async def _xattr_request(self, record: ItemRecord, sent: SendEntry) -> bytes:
        """xattrs.c recv_xattr_request after a record; returns the answer for its echo."""
        if not acl_xattr.xattr_request_follows(self.opts, self.neg, record.iflags):
            return b""
        xattrs = self.flist_encoder.xattrs
        nums = await self._read(acl_xattr.request_reader(xattrs, sent.entry, sent.entry.name))
        if not nums:
            return acl_xattr.answer(xattrs, sent.entry, nums, None)[0]
        try:
            current = await self.fs.lstat(sent.path)
        except FsError:
            current = None
        answer, gone = acl_xattr.answer(xattrs, sent.entry, nums, current)
        fname = sent.entry.name.decode("utf-8", "surrogateescape")
        for name in gone:
            self.wire.rprintf(
                Log.ERROR_XFER,
                f"failed to re-read xattr {name.decode('utf-8', 'surrogateescape')} for {fname}\n",
            )
        return answer

    async def send_one(self, record: ItemRecord, sent: SendEntry, answer: bytes = b"") -> None:
        """One transfer of send_files: receive_sums, open, echo, match_sums.

        With --append (not in the redo of a file already sent) the client sends no
        block sums: its copy is the first `basis_length` bytes, and only the rest goes.
        """
        appending = self.append_mode if record.ndx not in self._sent else 0
        head = await self._read(self._read_sum_head)
        width = 4 + head.s2length
        count = 0 if appending else head.count
        raw = await self._read(lambda buf: buf.take(count * width)) if count else b""
        sums = BlockSums.from_wire(count, head.blength, head.s2length, head.remainder, raw)
        self._hint_read_ahead(record.ndx)
        reader = await self._open(record.ndx, sent)
        if reader is None:
            return
        try:
            if appending and reader.size < sent.entry.size:
                self.wire.rprintf(Log.WARNING, f"skipped diminished file: {_quoted(sent.path)}\n")
                if self.protocol >= 30:
                    self.wire.send_msg(MSG_NO_SEND, pack_int(record.ndx))
                return
            self._echo(record, answer)
            self.wire.write(pack_sum_head(head, self.protocol))
            recorded = None
            if self._unseeded() and appending != 1:  # --append sums only what it sends
                recorded = recorded_digest(reader, self.neg.checksum)
            skip = head.basis_length if appending else 0
            failure = await self.delta.match_sums(
                reader, sums, recorded, skip=skip, hash_skipped=appending == 2
            )
        finally:
            await reader.close()
        self._sent.add(record.ndx)
        if failure is not None:
            self.io_error |= IOERR_GENERAL
            self.wire.rprintf(
                Log.ERROR_XFER,
                f"rsync: [sender] read errors mapping {_quoted(sent.path)}: "
                f"{failure.strerror or failure} ({failure.errno})\n",
            )

    def _hint_read_ahead(self, ndx: int) -> None:
        """Name the files the client will probably ask for next, when it reads in order."""
        previous, self._last_request = self._last_request, ndx
        if self._read_ahead is None or ndx < self._ahead_end:
            return
        if not 0 < ndx - previous <= AHEAD_GAP:
            return  # a lone request: reading ahead would mostly read what is not wanted
        flist = self.lists.list_for(ndx)
        if flist is None:
            return
        first = ndx - flist.ndx_start
        following = flist.entries[first : first + AHEAD_FILES]
        self._read_ahead([sent.path for sent in following if sent.st.is_file()])
        self._ahead_end = ndx + len(following)

    async def _open(self, ndx: int, sent: SendEntry) -> FileReader | None:
        """do_open for a requested file; a failure is reported and answered MSG_NO_SEND."""
        try:
            return await self.fs.open_read(sent.path)
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                self.io_error |= IOERR_VANISHED
                self.wire.rprintf(Log.WARNING, f"file has vanished: {_quoted(sent.path)}\n")
            else:
                self.io_error |= IOERR_GENERAL
                self.wire.rprintf(
                    Log.ERROR_XFER,
                    f"rsync: [sender] send_files failed to open {_quoted(sent.path)}: "
                    f"{exc.strerror} ({exc.errno})\n",
                )
            if self.protocol >= 30:
                self.wire.send_msg(MSG_NO_SEND, pack_int(ndx))
            return None

    def _unseeded(self) -> bool:
        """Whether the whole-file checksum is a plain digest (checksum.c sum_init)."""
        return self.protocol >= 30 or self.neg.checksum != "md4"

    def _echo(self, record: ItemRecord, xattr_answer: bytes = b"") -> None:
        """sender.c write_ndx_and_attrs (with -X, the xattr values asked for after it)."""
        self.wire.write(
            pack_item(
                self.ndx_out,
                record.ndx,
                record.iflags,
                basis_type=record.basis_type,
                xname=record.xname,
            )
            + xattr_answer
        )

    def _invalid_index(self, ndx: int) -> None:
        raise ProtocolError(
            f"Invalid file index: {ndx} ({NDX_DONE} - {self.lists.last.end - 1}) [sender]"
        )

    # --- main.c handle_stats / read_final_goodbye ------------------------------------

    def handle_stats(self) -> None:
        """Rsync main.c:handle_stats for a server sender: the totals the client prints."""
        if self.builder is not None:
            self.stats.total_size = self.builder.total_size
        self.stats.total_read = self.wire.bytes_received
        self.stats.total_written = self.wire.total_written
        self.wire.write(self.stats.pack(self.protocol))

    async def read_final_goodbye(self) -> None:
        """Rsync main.c:read_final_goodbye (sender side)."""
        ndx = await self._read(self._read_goodbye)
        if self.protocol >= 31 and ndx == NDX_DONE:
            self.wire.write(self.ndx_out.encode(NDX_DONE))
            ndx = await self._read(self._read_goodbye)
        if ndx != NDX_DONE:
            raise ProtocolError(f"Invalid packet at end of run ({ndx}) [sender]")

    def _read_goodbye(self, buf: ReceiveBuffer) -> int | None:
        if self.protocol < 29:
            return read_item(buf, lambda cur: cur.int32())
        record = self._read_record(buf)
        if record is None:
            return None
        return record.ndx if isinstance(record, ItemRecord) else record

    # --- reading (rsync.c read_ndx_and_attrs, io.c read_sum_head) --------------------

    async def _read(
        self, reader: Callable[[ReceiveBuffer], T | None], *, idle_lists: bool = False
    ) -> T:
        """Read one item, flushing our output first if we would have to wait for it.

        With `idle_lists` (the next record) the wait is spent sending file lists ahead,
        as rsync's I/O loop does while extra_flist_sending_enabled.
        """
        if not self.wire.buffered:
            if idle_lists and self.extra is not None:
                await self.extra.send_while_idle()
            await self.wire.flush()
        return await self.wire.read(reader)

    def _read_record(self, buf: ReceiveBuffer) -> ItemRecord | int | None:
        """The next record; NDX_DEL_STATS is echoed on the way (rsync.c)."""
        while True:
            record = read_item(buf, lambda cur: read_ndx_and_attrs(cur, self.ndx_in))
            if not isinstance(record, DeleteStats):
                return record
            self.wire.write(self.ndx_out.encode(NDX_DEL_STATS) + record.pack())

    def _read_sum_head(self, buf: ReceiveBuffer) -> SumHead | None:
        return read_item(
            buf,
            lambda cur: read_sum_head(cur, protocol=self.protocol, xfer_sum_len=self.xfer_sum_len),
        )

    def _peer_exit(self, payload: bytes) -> None:
        """io.c read_a_msg MSG_ERROR_EXIT, as a sender: acknowledge empty, then stop."""
        if len(payload) == 4:
            code = int.from_bytes(payload, "little", signed=True)
            if self.protocol >= 31:
                self.wire.send_msg(MSG_ERROR_EXIT, b"")
        elif not payload:
            code = 0
        else:
            raise RemoteProtocolError(
                f"invalid multi-message {MSG_ERROR_EXIT}:{len(payload)}", ExitCode.RERR_STREAMIO
            )
        raise PeerExit(code)

    # --- cleanup.c ---------------------------------------------------------------------

    def exit_code(self) -> int:
        """cleanup.c _exit_cleanup: the exit code of a pull that ran to its end."""
        io_error = 0 if self.opts.ignore_errors else self.io_error
        code = ExitCode.RERR_OK
        if io_error & IOERR_DEL_LIMIT:
            code = ExitCode.RERR_DEL_LIMIT
        if io_error & IOERR_VANISHED:
            code = ExitCode.RERR_VANISHED
        if io_error & IOERR_GENERAL or self.wire.got_xfer_error:
            code = ExitCode.RERR_PARTIAL
        return int(code)


def _quoted(path: bytes) -> str:
    return '"/' + path.decode("utf-8", "surrogateescape") + '"'
