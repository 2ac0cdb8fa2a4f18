"""The generator's regular files: the quick check, and asking the sender for a file.

generator.c recv_generator's tail for a regular file: skip it when the quick check
(size and mtime, or -c's checksum, --size-only, -I) says it is up to date -- fixing
its attributes -- and otherwise send the request: the index, ITEM_TRANSFER item flags
and the block sums of the existing file (generate_and_send_sums), so unchanged blocks
come back as references instead of data. A missing or empty basis, --whole-file and
a dry run ask for the whole file (a sum head of zeros, or nothing at all). A new file
is diffed against a basis directory's copy (alt_dest.py) or a similar file (fuzzy.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FileReader, FsError, Stat
from rsyncd_py.protocol import checksums
from rsyncd_py.protocol.constants import (
    FNAMECMP_FNAME,
    ITEM_REPORT_CHANGE,
    ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
)
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.sums import (
    WHOLE_FILE,
    SumHead,
    pack_block_sums,
    pack_sum_head,
    sum_sizes_sqroot,
)
from rsyncd_py.roles import metadata
from rsyncd_py.roles.alt_dest import HANDLED, Basis
from rsyncd_py.roles.delete import DEL_FOR_FILE
from rsyncd_py.roles.fuzzy import FuzzyBasis
from rsyncd_py.roles.hardlinks import is_hlinked
from rsyncd_py.roles.metadata import quote, report_fs_error, set_file_attrs
from rsyncd_py.roles.transfer import FLAG_FILE_SENT, Transfer
from rsyncd_py.wire import Log

if TYPE_CHECKING:
    from rsyncd_py.roles.generator import Generator

_SUMS_BATCH = 1 << 20  # bytes of basis summed per read (bounds memory per file)
_INVERTED = bytes(range(255, -1, -1))  # byte -> byte ^ 0xFF, for bytes.translate


class FileRequests:
    """Regular files for one Generator (which holds the shared generator state)."""

    def __init__(self, generator: Generator) -> None:
        self.g = generator

    async def generate(self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None) -> None:
        t = self.g.t
        opts = t.opts
        if not self.g.redo:
            skip = None
            if opts.max_size >= 0 and entry.size > opts.max_size:
                skip = "is over max-size"
            elif opts.min_size >= 0 and entry.size < opts.min_size:
                skip = "is under min-size"
            elif (
                opts.update_only > 0
                and st is not None
                and st.is_file()
                and entry.mtime - st.mtime_ns // 1_000_000_000 < opts.modify_window
            ):
                skip = "is newer"
            if skip is not None:
                if t.opts.verbose >= 2:
                    self.g.info(f"{_s(t.display_name(entry))} {skip}\n")
                await self._skipped(entry, ndx)
                return
        if st is not None and not st.is_file():
            if not await self.g.deleter.make_room(entry, st, DEL_FOR_FILE):
                return
            st = None

        basis_type, basis_path = FNAMECMP_FNAME, path
        alt = self.g.alt
        if alt is not None and (st is None or not alt.copy_dest):  # try_dests_reg
            found = await alt.regular(entry, ndx, path, st)
            if found == HANDLED:
                self.g.send_success(ndx, up_to_date=True)
                return
            if isinstance(found, Basis):  # diff against it: no quick check (it differs)
                basis_type, basis_path, st = found.index, found.path, found.st
        fuzzy = None
        if st is None and self.g.fuzzy is not None:  # a new file: diff it against a similar one
            fuzzy = await self.g.fuzzy.find(entry, path)
            if fuzzy is not None:
                basis_type, basis_path, st = fuzzy.basis_type, fuzzy.path, fuzzy.st

        basis: FileReader | None = None
        if st is not None:
            if basis_type == FNAMECMP_FNAME and await self.quick_check_ok(entry, path, st):
                accurate = bool(opts.always_checksum)
                await set_file_attrs(t, path, entry, st, report=t.attrs_report, accurate=accurate)
                self.g.itemize(entry, ndx, st, 0)
                await self.g.finish_hard_link(entry, ndx, path, st)
                self.g.send_success(ndx, up_to_date=True)
                return
            if fuzzy is None and self._appending() and st.size >= entry.size:
                await self._skipped(entry, ndx)  # --append: nothing to add to it
                return
            if t.do_xfers and not t.whole_file and st.size > 0:
                try:
                    basis = await t.fs.open_read(basis_path)
                except FsError as exc:
                    report_fs_error(t, exc, f"failed to open {quote(basis_path)}, continuing")
                    st, basis_type, fuzzy = None, FNAMECMP_FNAME, None
        hlinks = self.g.hlinks
        if st is None and hlinks is not None and hlinks.not_last(entry):
            self.g.count(ndx, +1)  # in flight until the group's leader is linked to it
            return  # a missing hard-link member: the group's last one brings the data
        if self.g.fuzzy is not None and st is not None:
            self.g.fuzzy.file_sent(entry, path)
        try:
            await self._request(entry, ndx, path, st, basis, basis_type=basis_type, fuzzy=fuzzy)
        finally:
            if basis is not None:
                await basis.close()

    def _appending(self) -> bool:
        """--append/--append-verify, except in the redo (a normal transfer then)."""
        return bool(self.g.t.append_mode) and not self.g.redo

    async def _skipped(self, entry: FileEntry, ndx: int) -> None:
        if self.g.hlinks is not None and is_hlinked(entry):
            await self.g.hlinks.skipped(entry, ndx)

    async def quick_check_ok(self, entry: FileEntry, path: bytes, st: Stat) -> bool:
        """generator.c quick_check_ok for a regular file (at `path`, here or a basis dir)."""
        t = self.g.t
        opts = t.opts
        if st.size != entry.size:
            return False
        if self.g.redo:
            return False  # a redo always transfers (ignore_times++ and no -c)
        if opts.always_checksum > 0:
            digest = await self._file_checksum(path, st)
            return digest is not None and digest == entry.checksum
        if opts.size_only > 0:
            return True
        if opts.ignore_times:
            return False
        return not metadata.mtime_differs(t, st, entry)

    async def _file_checksum(self, path: bytes, st: Stat) -> bytes | None:
        """checksum.c file_checksum: the -c digest of our copy (the store's, if it has it)."""
        t = self.g.t
        name = t.neg.file_checksum
        recorded = await _recorded_digest(t, path, name)
        if recorded is not None:
            return recorded
        hasher = checksums.new_plain_hasher(name)
        try:
            reader = await t.fs.open_read(path)
        except FsError:
            return bytes(checksums.digest_len(name))
        try:
            async for chunk in reader.stream():
                hasher.update(chunk)
        finally:
            await reader.close()
        return hasher.digest()

    async def _request(
        self,
        entry: FileEntry,
        ndx: int,
        path: bytes,
        st: Stat | None,
        basis: FileReader | None,
        *,
        basis_type: int = FNAMECMP_FNAME,
        fuzzy: FuzzyBasis | None = None,
    ) -> None:
        """The notify_others tail of recv_generator: ask the sender for the file.

        `st` is the basis's Stat (itemize compares with it), `basis_type` its directory.
        A `fuzzy` basis is named in the item record, which shows the file as new.
        """
        t = self.g.t
        if t.do_xfers:
            self.g.count(ndx, +1)  # the list is in progress until the receiver is done
        if is_hlinked(entry):
            entry.flags |= FLAG_FILE_SENT  # members queue behind it until it is in
        self.g.write_ndx(ndx)
        iflags = ITEM_TRANSFER
        if t.opts.always_checksum > 0 and not self.g.redo:
            iflags |= ITEM_REPORT_CHANGE
        if fuzzy is None:
            self.g.itemize(entry, None, st, iflags, basis_type=basis_type)
        else:
            iflags |= ITEM_XNAME_FOLLOWS
            self.g.itemize(entry, None, None, iflags, basis_type=basis_type, xname=fuzzy.name)
        if not t.do_xfers:
            await self.g.finish_hard_link(entry, ndx, path, st)  # a dry run: "done" now
            return
        if basis is None or st is None:
            t.wire.write(pack_sum_head(WHOLE_FILE, t.protocol))
        else:
            await self._send_sums(basis, st.size, path)
        await t.wire.drain()

    async def _send_sums(self, basis: FileReader, size: int, path: bytes) -> None:
        """generator.c generate_and_send_sums: the sum head and one sum pair per block."""
        t = self.g.t
        neg = t.neg
        head: SumHead = sum_sizes_sqroot(
            size,
            protocol=t.protocol,
            xfer_sum_len=checksums.digest_len(neg.checksum),
            block_size=t.opts.block_size,
            redo=self.g.redo,
        )
        t.wire.write(pack_sum_head(head, t.protocol))
        if self._appending():
            return  # --append: the head says how much the receiver has; no sums
        batch = max(head.blength, (_SUMS_BATCH // head.blength) * head.blength)
        offset = 0
        unreadable = False
        while offset < size:
            length = min(batch, size - offset)
            try:
                data = b"" if unreadable else await basis.read(offset, length)
            except FsError as exc:
                # rsync's map_ptr zero-fills what it cannot read and sums the zeros; a
                # zero block of the new file would then be "matched" to a basis block the
                # receiver cannot read either. The rest of the basis gets sums no block
                # can match instead (inverted strong sums), so it travels as literal
                # data and the session goes on (a damaged store block used to end it).
                t.wire.rprintf(
                    Log.WARNING,
                    f"rsync: [generator] read errors mapping {quote(path)}: "
                    f"{exc.strerror or exc} ({exc.errno})\n",
                )
                unreadable = True
                data = b""
            if len(data) < length:  # the file shrank under us: rsync's map_ptr gives zeros
                data = data + bytes(length - len(data))
            weak = checksums.weak_block_sums(data, head.blength)
            strong = checksums.strong_block_sums(
                neg.checksum,
                data,
                head.blength,
                head.s2length,
                protocol=t.protocol,
                seed=neg.seed,
                seed_fix=neg.seed_fix,
            )
            if unreadable:
                strong = strong.translate(_INVERTED)
            t.wire.write(pack_block_sums(weak, strong, head.s2length))
            await t.wire.drain()
            offset += length


# Digests a FileSystem may have recorded when a file was written (the store's
# `file_digests`), and how to turn each into rsync's byte order: xxhash digests are
# canonical (big-endian) there and little-endian on the wire.
_RECORDED_DIGESTS = {"xxh128": True, "md5": False}


async def _recorded_digest(t: Transfer, path: bytes, name: str) -> bytes | None:
    """A whole-file digest the FileSystem recorded at write time, in rsync's order."""
    reverse = _RECORDED_DIGESTS.get(name)
    lookup = getattr(t.fs, "file_digests", None)
    if reverse is None or lookup is None:
        return None
    try:
        digest = (await lookup(path)).get(name)
    except FsError:
        return None
    if digest is None:
        return None
    return digest[::-1] if reverse else digest


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
