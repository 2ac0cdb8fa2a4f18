"""Numbers of the rsync wire protocol, spelt as rsync spells them (rsync.h, errcode.h).

Only values that travel on the wire or decide wire behaviour live here; exit codes and
their texts are in `errors.py`.
"""

from __future__ import annotations

from typing import Final

# --- protocol versions (rsync.h) ---------------------------------------------------
PROTOCOL_VERSION: Final = 32  # what we advertise (rsync 3.4+)
MIN_PROTOCOL_VERSION: Final = 20  # a peer below this cannot be spoken to at all
MAX_PROTOCOL_VERSION: Final = 40  # a peer above this is nonsense ("is your shell clean?")
# The oldest protocol this server's codec and roles are verified against; a lower
# negotiated version ends the session with rsync's "--protocol must be at least" text.
OUR_MIN_PROTOCOL_VERSION: Final = 27

# --- file-list transmit flags (rsync.h XMIT_*) -------------------------------------
XMIT_TOP_DIR: Final = 1 << 0
XMIT_SAME_MODE: Final = 1 << 1
XMIT_SAME_RDEV_pre28: Final = 1 << 2  # protocols 20-27
XMIT_EXTENDED_FLAGS: Final = 1 << 2  # protocols 28+
XMIT_SAME_UID: Final = 1 << 3
XMIT_SAME_GID: Final = 1 << 4
XMIT_SAME_NAME: Final = 1 << 5
XMIT_LONG_NAME: Final = 1 << 6
XMIT_SAME_TIME: Final = 1 << 7
XMIT_SAME_RDEV_MAJOR: Final = 1 << 8  # devices, protocols 28+
XMIT_NO_CONTENT_DIR: Final = 1 << 8  # directories, protocols 30+
XMIT_HLINKED: Final = 1 << 9  # non-directories, protocols 28+
XMIT_SAME_DEV_pre30: Final = 1 << 10  # protocols 28-29
XMIT_USER_NAME_FOLLOWS: Final = 1 << 10  # protocols 30+
XMIT_RDEV_MINOR_8_pre30: Final = 1 << 11  # protocols 28-29
XMIT_GROUP_NAME_FOLLOWS: Final = 1 << 11  # protocols 30+
XMIT_HLINK_FIRST: Final = 1 << 12  # protocols 30+, hard-linked files
XMIT_IO_ERROR_ENDLIST: Final = 1 << 12  # in the end marker, with XMIT_EXTENDED_FLAGS
XMIT_MOD_NSEC: Final = 1 << 13  # protocols 31+
XMIT_SAME_ATIME: Final = 1 << 14
XMIT_CRTIME_EQ_MTIME: Final = 1 << 17

# --- compat flags (compat.c CF_*) ---------------------------------------------------
CF_INC_RECURSE: Final = 1 << 0
CF_SYMLINK_TIMES: Final = 1 << 1
CF_SYMLINK_ICONV: Final = 1 << 2
CF_SAFE_FLIST: Final = 1 << 3
CF_AVOID_XATTR_OPTIM: Final = 1 << 4
CF_CHKSUM_SEED_FIX: Final = 1 << 5
CF_INPLACE_PARTIAL_DIR: Final = 1 << 6
CF_VARINT_FLIST_FLAGS: Final = 1 << 7
CF_ID0_NAMES: Final = 1 << 8

# --- multiplexing (rsync.h MPLEX_BASE, enum msgcode) -------------------------------
MPLEX_BASE: Final = 7
MAX_FRAME_LEN: Final = 0xFFFFFF  # 24-bit length field
MSG_DATA: Final = 0
MSG_ERROR_XFER: Final = 1
MSG_INFO: Final = 2
MSG_ERROR: Final = 3  # protocol 30+
MSG_WARNING: Final = 4  # protocol 30+
MSG_ERROR_SOCKET: Final = 5  # sibling-only
MSG_LOG: Final = 6  # sibling-only
MSG_CLIENT: Final = 7  # sibling-only
MSG_ERROR_UTF8: Final = 8  # sibling-only
MSG_REDO: Final = 9  # sibling-only
MSG_STATS: Final = 10  # sibling-only
MSG_IO_ERROR: Final = 22
MSG_IO_TIMEOUT: Final = 33
MSG_NOOP: Final = 42
MSG_ERROR_EXIT: Final = 86
MSG_SUCCESS: Final = 100
MSG_DELETED: Final = 101
MSG_NO_SEND: Final = 102

# --- special file-list indexes (rsync.h NDX_*) -------------------------------------
NDX_DONE: Final = -1
NDX_FLIST_EOF: Final = -2
NDX_DEL_STATS: Final = -3
NDX_FLIST_OFFSET: Final = -101

# --- itemize flags (rsync.h ITEM_*) ------------------------------------------------
ITEM_REPORT_ATIME: Final = 1 << 0
ITEM_REPORT_CHANGE: Final = 1 << 1
ITEM_REPORT_SIZE: Final = 1 << 2  # regular files
ITEM_REPORT_TIMEFAIL: Final = 1 << 2  # symlinks
ITEM_REPORT_TIME: Final = 1 << 3
ITEM_REPORT_PERMS: Final = 1 << 4
ITEM_REPORT_OWNER: Final = 1 << 5
ITEM_REPORT_GROUP: Final = 1 << 6
ITEM_REPORT_ACL: Final = 1 << 7
ITEM_REPORT_XATTR: Final = 1 << 8
ITEM_REPORT_CRTIME: Final = 1 << 10
ITEM_BASIS_TYPE_FOLLOWS: Final = 1 << 11
ITEM_XNAME_FOLLOWS: Final = 1 << 12
ITEM_IS_NEW: Final = 1 << 13
ITEM_LOCAL_CHANGE: Final = 1 << 14
ITEM_TRANSFER: Final = 1 << 15
ITEM_MATCHED: Final = 1 << 18  # generator-internal
SIGNIFICANT_ITEM_FLAGS: Final = ~(ITEM_BASIS_TYPE_FOLLOWS | ITEM_XNAME_FOLLOWS | ITEM_LOCAL_CHANGE)

# --- basis types that follow ITEM_BASIS_TYPE_FOLLOWS (rsync.h FNAMECMP_*) ----------
FNAMECMP_BASIS_DIR_LOW: Final = 0x00
FNAMECMP_BASIS_DIR_HIGH: Final = 0x7F
FNAMECMP_FNAME: Final = 0x80
FNAMECMP_PARTIAL_DIR: Final = 0x81
FNAMECMP_BACKUP: Final = 0x82
FNAMECMP_FUZZY: Final = 0x83

# --- I/O error bits (rsync.h IOERR_*) ----------------------------------------------
IOERR_GENERAL: Final = 1 << 0
IOERR_VANISHED: Final = 1 << 1
IOERR_DEL_LIMIT: Final = 1 << 2
IOERR_VALID_MASK: Final = IOERR_GENERAL | IOERR_VANISHED | IOERR_DEL_LIMIT

# --- block checksums (rsync.h) -----------------------------------------------------
BLOCK_SIZE: Final = 700
MAX_BLOCK_SIZE: Final = 1 << 17  # protocol 30+
OLD_MAX_BLOCK_SIZE: Final = 1 << 29  # below protocol 30
SUM_LENGTH: Final = 16
SHORT_SUM_LENGTH: Final = 2
BLOCKSUM_BIAS: Final = 10
CHUNK_SIZE: Final = 32 * 1024  # largest uncompressed literal run per token

# --- limits ------------------------------------------------------------------------
MAXPATHLEN: Final = 4096
BIGPATHBUFLEN: Final = MAXPATHLEN + 1024  # longest non-data message
MAX_WIRE_NSEC: Final = 999_999_999
MAX_WIRE_DEL_STAT: Final = 1 << 28
MAX_NSTR_STRLEN: Final = 256  # longest negotiation string
