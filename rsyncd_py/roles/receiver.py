"""The receiver half of a push: read what the sender sends and rebuild the files.

Mirrors receiver.c recv_files / receive_data. The sender answers the generator's
records in order: it echoes every non-transfer record and, for each requested file,
sends the record, the echoed sum head, the delta (literal runs and references to basis
blocks) and the whole-file checksum. The receiver writes the new content to a
`FileWriter` -- matched blocks are copied from the existing file through
`FileReader.read`, literal runs are written as they arrive -- and commits it with its
metadata only when the checksum matches. A mismatch in the first pass asks the
generator to request the file again with full-length block sums (Redo); a second
mismatch is "failed verification -- update discarded" and a partial-transfer exit.

The receiver tells the generator (`Transfer.to_generator`) each time it finishes a
phase -- on each NDX_DONE from the sender, and at protocol 31+ on the sender's final
goodbye echo -- which is what paces the generator's phase protocol. It never writes data
to the wire, only messages, so it can never block on the sender.

With incremental recursion the sender's stream also carries the directories' file lists
(`NDX_FLIST_OFFSET - dir_ndx` headers, then NDX_FLIST_EOF): the receiver reads each
into `Transfer.incoming` and tells the generator, which is working on them as they come.
Every NDX_DONE echo then first frees the oldest list; only the one that frees the last
ends phase 0. And the generator hears how every requested file ended (Finished), since
it frees a list only when all its transfers are in.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rsyncd_py.fs.base import FileReader, FileWriter, FsError, Stat
from rsyncd_py.protocol import checksums, tokens
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import (
    FNAMECMP_FNAME,
    FNAMECMP_FUZZY,
    ITEM_IS_NEW,
    ITEM_TRANSFER,
    MSG_SUCCESS,
    NDX_DONE,
    NDX_FLIST_EOF,
    NDX_FLIST_OFFSET,
)
from rsyncd_py.protocol.errors import ExitCode, ProtocolError, SessionError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.ints import pack_int, read_item
from rsyncd_py.protocol.itemize import ItemRecord, read_ndx_and_attrs
from rsyncd_py.protocol.stats import DeleteStats
from rsyncd_py.protocol.sums import SumHead, read_sum_head
from rsyncd_py.roles import metadata
from rsyncd_py.roles.alt_dest import basis_path
from rsyncd_py.roles.delete import Deleter
from rsyncd_py.roles.fuzzy import fuzzy_basis_path, is_fuzzy_basis
from rsyncd_py.roles.hardlinks import is_hlinked
from rsyncd_py.roles.metadata import quote
from rsyncd_py.roles.transfer import (
    FLAG_FILE_SENT,
    Finished,
    ListsChanged,
    PhaseDone,
    Redo,
    Transfer,
    now_ns,
)
from rsyncd_py.wire import Log


class Receiver:
    """receiver.c's state for one push session."""

    def __init__(self, t: Transfer, deleter: Deleter) -> None:
        self.t = t
        self.deleter = deleter
        self.max_phase = 2 if t.protocol >= 29 else 1
        self.decoder = tokens.new_token_decoder(t.neg.compression, protocol=t.protocol)
        self.xfer_sum_len = checksums.digest_len(t.neg.checksum)
        self.sparse = t.opts.sparse_files > 0

    async def recv_files(self) -> None:
        """Rsync receiver.c:recv_files, then main.c read_final_goodbye."""
        t = self.t
        phase = 0
        while True:
            record = await t.wire.read(self._read_record)
            if isinstance(record, DeleteStats):
                continue
            if isinstance(record, int):
                if record != NDX_DONE:
                    await self._file_list_record(record)
                    continue
                if t.inc_recurse and len(t.lists):
                    t.lists.pop_first()  # the generator is done with the oldest list
                    if len(t.lists):
                        continue
                phase += 1
                await t.to_generator.put(PhaseDone())
                if phase > self.max_phase:
                    break
                continue
            entry = self._entry_for(record)
            if entry is None:
                continue  # a protocol-29 keep-alive
            if t.attrs.answer_follows(record.iflags):
                reader = t.attrs.answer_reader(entry)
                while not await t.wire.read(reader):  # the xattr values we asked for
                    pass
            if not record.iflags & ITEM_TRANSFER:
                # the sender's echo of an item the generator itemized
                if t.attrs.sets_attrs_again(record.iflags):
                    await metadata.set_file_attrs(t, t.path_of(entry), entry, None)
                continue
            if phase == 2:
                raise ProtocolError("got transfer request in phase 2 [receiver]")
            if not t.do_xfers:
                continue  # a dry run: the sender sends no data
            done = await self._receive_file(record.ndx, entry, record)
            if done is not None and (t.inc_recurse or (done and is_hlinked(entry))):
                t.to_generator.put_nowait(Finished(record.ndx, ok=done))
        if t.protocol >= 31:
            goodbye = await t.wire.read(self._read_record)
            if goodbye != NDX_DONE:
                raise ProtocolError(f"Invalid packet at end of run ({goodbye}) [receiver]")
            await t.to_generator.put(PhaseDone())

    def _read_record(self, buf: ReceiveBuffer) -> ItemRecord | DeleteStats | int | None:
        return read_item(buf, lambda cur: read_ndx_and_attrs(cur, self.t.ndx_in))

    async def _file_list_record(self, ndx: int) -> None:
        """rsync.c read_ndx_and_attrs: NDX_FLIST_EOF or the header of a directory's list."""
        t = self.t
        if not t.inc_recurse or (ndx != NDX_FLIST_EOF and ndx > NDX_FLIST_OFFSET):
            last = t.lists.last.end - 1 if len(t.lists) else -1
            raise ProtocolError(f"Invalid file index: {ndx} ({NDX_DONE} - {last}) [receiver]")
        if ndx == NDX_FLIST_EOF:
            t.lists.eof = True
        else:
            _, io_error = await t.incoming.receive_sub(NDX_FLIST_OFFSET - ndx)
            t.note_io_error(io_error)
        t.to_generator.put_nowait(ListsChanged())

    def _entry_for(self, record: ItemRecord) -> FileEntry | None:
        """Validate the index of a record (rsync.c read_ndx_and_attrs' checks)."""
        t = self.t
        ndx = record.ndx
        if t.inc_recurse:
            _, entry = t.lists.find(ndx, "read_ndx_and_attrs", "receiver")
        else:
            entries = t.lists.first.entries
            if t.protocol < 30 and ndx == len(entries) and record.iflags == ITEM_IS_NEW:
                return None
            if ndx >= len(entries):
                raise ProtocolError(f"Invalid file index: {ndx} ({NDX_DONE} - {len(entries) - 1})")
            entry = entries[ndx]
        if not entry.active:
            raise ProtocolError(f"rsync: refusing transfer of cleared file index {ndx}")
        if record.iflags & ITEM_TRANSFER and not entry.is_file():
            raise ProtocolError(f"received request to transfer non-regular file: {ndx} [receiver]")
        if record.basis_type >= FNAMECMP_FUZZY and record.iflags & ITEM_TRANSFER:
            if not is_fuzzy_basis(t, record.basis_type, record.xname):
                raise ProtocolError(f"invalid fuzzy basis: {record.basis_type} {record.xname!r}")
        elif (
            record.basis_type != FNAMECMP_FNAME
            and record.iflags & ITEM_TRANSFER
            and record.basis_type >= len(t.basis_dirs)
        ):
            raise ProtocolError(f"invalid basis_dir index: {record.basis_type}.")
        return entry

    async def _receive_file(self, ndx: int, entry: FileEntry, record: ItemRecord) -> bool | None:
        """One file of recv_files: open basis and output, receive_data, commit or redo.

        Returns True once the file is in place, False if it is given up, None when a
        redo was asked for.
        """
        t = self.t
        path = t.path_of(entry)
        redoing = bool(entry.flags & FLAG_FILE_SENT)
        head = await t.wire.read(self._read_sum_head)

        basis: FileReader | None = None
        try:
            current = await t.fs.lstat(path)
            source, found = path, current
            if record.basis_type >= FNAMECMP_FUZZY and record.xname is not None:
                source = fuzzy_basis_path(t, path, record.basis_type, record.xname)
                found = await t.fs.lstat(source)
            elif record.basis_type != FNAMECMP_FNAME or (
                t.protocol < 29 and current is None and t.basis_dirs  # one basis dir then
            ):
                index = 0 if record.basis_type == FNAMECMP_FNAME else record.basis_type
                source = basis_path(t, index, path)
                found = await t.fs.lstat(source)
            if head.count and found is not None and found.is_file():
                basis = await t.fs.open_read(source)
        except FsError as exc:
            metadata.report_fs_error(t, exc, f"failed to open {quote(path)}")
            current = None

        writer: FileWriter | None = None
        try:
            writer = await t.fs.create(path)
        except FsError as exc:
            metadata.report_fs_error(t, exc, f"mkstemp {quote(path)} failed")
        append = 0 if redoing else t.append_mode  # the redo is a normal transfer
        try:
            ok, size = await self._receive_data(entry, head, basis, writer, path, append=append)
        except BaseException:
            if writer is not None:
                await writer.abort()
            raise
        finally:
            if basis is not None:
                await basis.close()
        if writer is None:
            return False
        if not ok:
            retained = await self._retain_failed(writer, entry, current, size, path)
            return self._failed_verification(ndx, entry, redoing, retained=retained)
        if current is not None and not current.is_file():
            current = None
        if current is not None and self.deleter.backups.enabled:
            # rsync.c finish_transfer: keep the old version before the new one lands
            name = t.display_name(entry)
            if not await self.deleter.backups.make(path, name, current, self.deleter, keep=True):
                await writer.abort()
                return False
        wanted = metadata.wanted_stat(t, entry, current, size=size, new_content=True)
        try:
            await writer.commit(wanted)
        except FsError as exc:
            metadata.report_fs_error(t, exc, f"rename {quote(path)} failed")
            return False
        if t.opts.remove_source_files:
            t.wire.send_msg(MSG_SUCCESS, pack_int(ndx))  # the sender may remove its copy
        return True

    def _read_sum_head(self, buf: ReceiveBuffer) -> SumHead | None:
        return read_item(
            buf,
            lambda cur: read_sum_head(
                cur, protocol=self.t.protocol, xfer_sum_len=self.xfer_sum_len
            ),
        )

    async def _receive_data(
        self,
        entry: FileEntry,
        head: SumHead,
        basis: FileReader | None,
        writer: FileWriter | None,
        path: bytes,
        *,
        append: int = 0,
    ) -> tuple[bool, int]:
        """Rsync receiver.c:receive_data: apply the token stream; return (sum ok, size).

        With `append` (--append 1, --append-verify 2) the file's first
        `head.basis_length` bytes are kept and the tokens add to them; only
        --append-verify's checksum covers them.
        """
        t = self.t
        neg = t.neg
        wire = t.wire
        decoder = self.decoder
        decoder.start_file()
        hasher = checksums.new_file_hasher(neg.checksum, protocol=t.protocol, seed=neg.seed)
        coalesce = neg.compression == "none"  # no history to feed: read matches in runs
        run_start = run_len = 0
        size = head.basis_length if append else 0
        for offset in range(0, size, _MAX_RUN):  # --append: what the file has so far
            kept = await self._read_basis(basis, offset, min(_MAX_RUN, size - offset), path)
            if append == 2:
                hasher.update(kept)
            if writer is not None:
                await self._write(writer, kept, path, basis=basis, offset=offset)

        async def flush_run() -> None:
            nonlocal run_len
            if run_len:
                block = await self._read_basis(basis, run_start, run_len, path)
                hasher.update(block)
                if writer is not None:
                    await self._write(writer, block, path, basis=basis, offset=run_start)
                run_len = 0

        while True:
            token = await wire.read(decoder.next_token)
            if token is tokens.END:
                break
            if isinstance(token, tokens.Literal):
                await flush_run()
                data = token.data
                hasher.update(data)
                if writer is not None:
                    await self._write(writer, data, path)
                size += len(data)
                continue
            index = token.index
            if not 0 <= index < head.count:
                raise ProtocolError(f"Invalid block index {index} (count={head.count}) [receiver]")
            offset, length = head.block_range(index)
            size += length
            if basis is None:
                if writer is not None:
                    raise ProtocolError(
                        f"got a block match with no basis file for {quote(path)} [receiver]"
                    )
                continue
            if coalesce:
                if run_len and run_start + run_len == offset and run_len < _MAX_RUN:
                    run_len += length
                    continue
                await flush_run()
                run_start, run_len = offset, length
                continue
            block = await self._read_basis(basis, offset, length, path)
            decoder.see_match(block)
            hasher.update(block)
            if writer is not None:
                await self._write(writer, block, path, basis=basis, offset=offset)
        await flush_run()
        sender_sum = await wire.read(lambda buf: buf.take(self.xfer_sum_len))
        return hasher.digest()[: self.xfer_sum_len] == sender_sum, size

    async def _read_basis(
        self, basis: FileReader | None, offset: int, length: int, path: bytes
    ) -> bytes:
        assert basis is not None
        try:
            data = await basis.read(offset, length)
        except FsError as exc:
            raise SessionError(
                f"rsync: [receiver] read errors mapping {quote(path)}: "
                f"{exc.strerror} ({exc.errno})",
                ExitCode.RERR_FILEIO,
            ) from exc
        if len(data) < length:  # the basis shrank: rsync's map_ptr reads zeros
            data += bytes(length - len(data))
        return data

    async def _write(
        self,
        writer: FileWriter,
        data: bytes,
        path: bytes,
        *,
        basis: FileReader | None = None,
        offset: int = 0,
    ) -> None:
        """Write `data`; with `basis`, it was read from the basis at `offset` (a copy)."""
        try:
            if self.sparse:
                for is_hole, piece in _sparse_pieces(data):
                    if is_hole:
                        await writer.write_zeros(len(piece))
                    else:
                        await writer.write(piece)
            elif basis is not None and offset + len(data) <= basis.size:  # no zero padding
                await writer.copy_from(basis, offset, data)
            else:
                await writer.write(data)
        except FsError as exc:
            raise SessionError(
                f"rsync: [receiver] write failed on {quote(path)}: {exc.strerror} ({exc.errno})",
                ExitCode.RERR_FILEIO,
            ) from exc

    async def _retain_failed(
        self,
        writer: FileWriter,
        entry: FileEntry,
        current: Stat | None,
        size: int,
        path: bytes,
    ) -> bool:
        """receiver.c after a checksum mismatch: keep what arrived, or drop it.

        --inplace (and so --append) writes into the file itself, and --partial without
        a partial dir keeps the partial file in its place: either way rsync's file now
        holds the data that failed, with the entry's attributes but not its mtime
        (finish_transfer without ok_to_set_time: the writes made it "now"). Returns
        whether it was kept.
        """
        t = self.t
        if not (t.opts.inplace or (t.opts.keep_partial and not t.opts.partial_dir)):
            await writer.abort()
            return False
        wanted = metadata.wanted_stat(t, entry, current, size=size, new_content=True)
        try:
            await writer.commit(replace(wanted, mtime_ns=now_ns()))
        except FsError as exc:
            metadata.report_fs_error(t, exc, f"rename {quote(path)} failed")
        return True

    def _failed_verification(
        self, ndx: int, entry: FileEntry, redoing: bool, *, retained: bool
    ) -> bool | None:
        """receiver.c: a checksum mismatch -- try once more (None), then give up (False)."""
        t = self.t
        name = t.display_name(entry).decode("utf-8", "surrogateescape")
        kept = "retained" if retained else "discarded"
        if redoing:
            t.wire.rprintf(Log.ERROR_XFER, f"ERROR: {name} failed verification -- update {kept}.\n")
            return False
        if t.name_level >= 1 or t.opts.stdout_format_has_i:
            t.wire.rprintf(
                Log.WARNING,
                f"WARNING: {name} failed verification -- update {kept} (will try again).\n",
            )
        entry.flags |= FLAG_FILE_SENT
        t.to_generator.put_nowait(Redo(ndx))
        return None


_MAX_RUN = 1 << 20  # matched basis bytes read at once (bounds memory on long match runs)
_HOLE_UNIT = 4096  # runs of zeros this long and aligned become holes (a file-system block)


def _sparse_pieces(data: bytes) -> list[tuple[bool, memoryview]]:
    """Split `data` into (is_hole, piece) runs of whole zero blocks and the rest.

    fileio.c write_sparse seeks over zero runs; the 4 KiB blocks are classified with
    numpy, so the only Python loop is over runs, not bytes.
    """
    view = memoryview(data)
    whole = len(data) - len(data) % _HOLE_UNIT
    if whole == 0:
        return [(False, view)] if data else []
    blocks = np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, _HOLE_UNIT)
    zero = ~blocks.any(axis=1)
    edges = np.flatnonzero(np.diff(zero.astype(np.int8))) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(zero)]))
    pieces = [
        (bool(zero[start]), view[start * _HOLE_UNIT : end * _HOLE_UNIT])
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    if whole < len(data):
        pieces.append((False, view[whole:]))
    return pieces
