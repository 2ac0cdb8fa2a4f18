"""The server side of rsync's setup exchange (compat.c setup_protocol), as pure functions.

The order on the wire, for a remote-shell server (rsync-protocol.md A.2):

  1. both sides write their protocol version (int); each uses the minimum;
  2. protocol >= 30: the server writes the compat flags (varint; a byte for a 'V'
     client), derived from the client's `-e` capability string;
  3. if the flags carry CF_VARINT_FLIST_FLAGS, both sides first write their checksum
     name list (unless --checksum-choice was given) and, when compressing without
     --compress-choice, their compression list; then read the peer's;
  4. the server writes the checksum seed (int).

This module computes and encodes each piece; the session does the I/O in that order.
`Negotiated` is everything later stages need to know about the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsyncd_py.protocol.constants import (
    CF_AVOID_XATTR_OPTIM,
    CF_CHKSUM_SEED_FIX,
    CF_ID0_NAMES,
    CF_INC_RECURSE,
    CF_INPLACE_PARTIAL_DIR,
    CF_SAFE_FLIST,
    CF_SYMLINK_TIMES,
    CF_VARINT_FLIST_FLAGS,
    MAX_NSTR_STRLEN,
    MAX_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    OUR_MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
)
from rsyncd_py.protocol.errors import ExitCode, ProtocolError, SessionError
from rsyncd_py.protocol.ints import Cursor, pack_byte, pack_int, pack_varint, pack_vstring

# checksum.c valid_checksums_items order; "xxhash" is an alias of xxh64.
CHECKSUM_PREFERENCE = ("xxh128", "xxh3", "xxh64", "md5", "md4", "sha1")
# compat.c valid_compressions_items order.
COMPRESSION_PREFERENCE = ("zstd", "lz4", "zlibx", "zlib")
_ALIASES = {"xxhash": "xxh64"}


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of the setup exchange."""

    protocol: int
    compat_flags: int  # 0 below protocol 30
    checksum: str  # transfer (block and whole-file) checksum
    file_checksum: str  # the -c file-list checksum
    compression: str  # "none" or a compressor name
    seed: int

    @property
    def varint_flist_flags(self) -> bool:
        return bool(self.compat_flags & CF_VARINT_FLIST_FLAGS)

    @property
    def inc_recurse(self) -> bool:
        return bool(self.compat_flags & CF_INC_RECURSE)

    @property
    def safe_flist(self) -> bool:
        """compat.c use_safe_inc_flist: the list end may carry an io_error."""
        return bool(self.compat_flags & CF_SAFE_FLIST) or self.protocol >= 31

    @property
    def seed_fix(self) -> bool:
        """compat.c proper_seed_order (the 'C' capability)."""
        return bool(self.compat_flags & CF_CHKSUM_SEED_FIX)

    @property
    def id0_names(self) -> bool:
        return bool(self.compat_flags & CF_ID0_NAMES)

    @property
    def inplace_partial(self) -> bool:
        return bool(self.compat_flags & CF_INPLACE_PARTIAL_DIR)


# --- 1. versions --------------------------------------------------------------------


def pack_version(version: int = PROTOCOL_VERSION) -> bytes:
    return pack_int(version)


def read_version(cur: Cursor) -> int:
    return cur.int32()


def agree_version(remote: int, *, forced: int | None = None) -> int:
    """Return the protocol both sides speak, or raise rsync's refusal.

    `forced` is the server's own --protocol option, if the client forwarded one.
    """
    if remote < MIN_PROTOCOL_VERSION or remote > MAX_PROTOCOL_VERSION:
        raise ProtocolError(
            "protocol version mismatch -- is your shell clean?\n"
            "(see the rsync manpage for an explanation)"
        )
    ours = PROTOCOL_VERSION if forced is None else forced
    protocol = min(ours, remote)
    if protocol < OUR_MIN_PROTOCOL_VERSION:
        raise ProtocolError(
            f"--protocol must be at least {OUR_MIN_PROTOCOL_VERSION} on the Server."
        )
    if protocol > PROTOCOL_VERSION:
        raise ProtocolError(f"--protocol must be no more than {PROTOCOL_VERSION} on the Server.")
    return protocol


# --- 2. compat flags ----------------------------------------------------------------

_CAPABILITY_FLAGS = {
    "f": CF_SAFE_FLIST,
    "x": CF_AVOID_XATTR_OPTIM,
    "C": CF_CHKSUM_SEED_FIX,
    "I": CF_INPLACE_PARTIAL_DIR,
    "u": CF_ID0_NAMES,
    "v": CF_VARINT_FLIST_FLAGS,
    "V": CF_VARINT_FLIST_FLAGS,
}


def compat_flags_for(
    client_info: str | None, *, symlink_times: bool, inc_recurse: bool = False
) -> int:
    """compat.c setup_protocol (server): the flags to send for the client's `-e` string.

    `inc_recurse` is compat.c's allow_inc_recurse (`ServerOptions.server_allows_inc_recurse`,
    which also checks the client's 'i'); without it bit 0 stays clear and the client sends
    or expects one complete file list.
    """
    flags = CF_INC_RECURSE if inc_recurse else 0
    if symlink_times:
        flags |= CF_SYMLINK_TIMES
    capabilities = _capabilities(client_info or "")
    for letter, bit in _CAPABILITY_FLAGS.items():
        if letter in capabilities:
            flags |= bit
    return flags


def pack_compat_flags(flags: int, client_info: str | None) -> bytes:
    """A pre-release 'V' client reads the flags as one byte; everyone else a varint."""
    if client_info and "V" in _capabilities(client_info):
        return pack_byte(flags)
    return pack_varint(flags)


def _capabilities(client_info: str) -> str:
    # "NN.M" before the letters is a pre-release sub-protocol id (compat.c
    # check_sub_protocol); the capability letters follow the dot.
    return client_info.split(".", 1)[1] if "." in client_info else client_info


# --- 3. name negotiation ------------------------------------------------------------


def pack_name_list(names: tuple[str, ...] | list[str]) -> bytes:
    """compat.c send_negotiate_str: our names, space-separated, as a vstring."""
    return pack_vstring(" ".join(names).encode("ascii"))


def read_name_list(cur: Cursor) -> list[str]:
    """compat.c recv_negotiate_str: the peer's space-separated name list."""
    raw = cur.vstring(MAX_NSTR_STRLEN)
    return raw.decode("ascii", "replace").split()


def choose_name(peer: list[str], ours: tuple[str, ...] | list[str]) -> str | None:
    """Pick the first of the peer's names that we support (rsync <= 3.4's server rule).

    A client picks its own most-preferred name in our list; since we list only what we
    support, the first of its names we support is the same choice.
    """
    supported = set(ours)
    for offered in peer:
        name = _ALIASES.get(offered, offered)
        if name in supported:
            return name
    return None


def default_checksum(protocol: int) -> str:
    """parse_csum_name(NULL): the implied checksum without negotiation."""
    return "md5" if protocol >= 30 else "md4"


def split_checksum_choice(choice: str, protocol: int) -> tuple[str, str]:
    """--checksum-choice=X[,Y]: X for transfer sums, Y (default X) for -c lists."""
    xfer, _, file = choice.partition(",")
    xfer = _ALIASES.get(xfer.lower(), xfer.lower())
    file = _ALIASES.get(file.lower(), file.lower()) if file else xfer
    xfer = default_checksum(protocol) if xfer == "auto" else xfer
    file = default_checksum(protocol) if file == "auto" else file
    return xfer, file


def negotiation_failed(kind: str) -> SessionError:
    """Rsync exits with RERR_UNSUPPORTED when no common name exists."""
    return SessionError(f"Failed to negotiate a {kind} choice.", ExitCode.RERR_UNSUPPORTED)


# --- 4. seed ------------------------------------------------------------------------


def make_seed(now: int, pid: int) -> int:
    """compat.c: checksum_seed = time ^ (pid << 6), as a signed 32-bit value."""
    seed = (now ^ (pid << 6)) & 0xFFFFFFFF
    if seed == 0:
        seed = 1  # 0 would mean "no seed" to the checksum code
    return seed - (1 << 32) if seed >= 1 << 31 else seed
