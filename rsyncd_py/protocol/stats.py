"""Transfer statistics on the wire (main.c handle_stats, generator.c write_del_stats).

Two records travel: the deletion counts a receiving generator sends after NDX_DEL_STATS
(protocol 31+), and the totals a server *sender* sends at the end of a pull (a server
receiver sends none). The client prints both under --stats.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsyncd_py.protocol.constants import MAX_WIRE_DEL_STAT
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.ints import Cursor, pack_varint, pack_varlong30


@dataclass(slots=True)
class DeleteStats:
    """Items deleted by --delete, by kind ("files" counts every kind, as rsync does)."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    devices: int = 0
    specials: int = 0

    def pack(self) -> bytes:
        """generator.c write_del_stats: five varints; the first excludes the others."""
        regular = self.files - self.dirs - self.symlinks - self.devices - self.specials
        return b"".join(
            pack_varint(n) for n in (regular, self.dirs, self.symlinks, self.devices, self.specials)
        )

    @classmethod
    def read(cls, cur: Cursor) -> DeleteStats:
        """main.c read_del_stats (bounded as rsync 3.4 bounds them)."""
        values = [cur.varint() for _ in range(5)]
        for value in values:
            if not 0 <= value <= MAX_WIRE_DEL_STAT:
                raise RemoteProtocolError(f"wire value del-stat out of range: {value}")
        regular, dirs, symlinks, devices, specials = values
        total = regular + dirs + symlinks + devices + specials
        return cls(total, dirs, symlinks, devices, specials)


@dataclass(slots=True)
class TransferStats:
    """The totals a server sender reports (bytes as seen from the sender)."""

    total_read: int = 0
    total_written: int = 0
    total_size: int = 0
    flist_buildtime_ms: int = 0
    flist_xfertime_ms: int = 0

    def pack(self, protocol: int) -> bytes:
        fields = [self.total_read, self.total_written, self.total_size]
        if protocol >= 29:
            fields += [self.flist_buildtime_ms, self.flist_xfertime_ms]
        return b"".join(pack_varlong30(value, protocol, 3) for value in fields)

    @classmethod
    def read(cls, cur: Cursor, protocol: int) -> TransferStats:
        count = 5 if protocol >= 29 else 3
        return cls(*(cur.varlong30(protocol, 3) for _ in range(count)))
