"""The ACL codec (protocol/acls.py) and Stat.acl (protocol/acl_blob.py).

Goldens (tests/data/protocol/xattrs_acls): the trees make_captures.py builds with
setfacl are rebuilt here and read through the kernel's system.posix_acl_* xattrs; our
AclSender writes the real sender's bytes for them (inline names included), what we
decode turns back into the same Stat.acl, and acls_differ agrees with the real
generator's 'a' itemize flags. Round trips, byte-at-a-time feeding and malformed input
complete it.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsyncd_py.protocol.acl_blob import (
    ACCESS_XATTR,
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    DEFAULT_XATTR,
    acl_blob_from_rsync,
    acl_xattrs,
    acls_differ,
    pack_acl_blob,
    pack_posix_acl,
    parse_posix_acl,
    rsync_acls,
)
from rsyncd_py.protocol.acls import EMPTY_ACL, AclReceiver, AclSender, IdAccess, RsyncAcl
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import ITEM_REPORT_ACL
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.ints import pack_varint, read_item
from tests.protocol import attr_goldens as goldens

TREES = goldens.trees()
ACL_CASES = ["push-a-p32", "push-a-incr-p32", "push-a-update-p32", "pull-a-update-p31"]
needs_setfacl = pytest.mark.skipif(shutil.which("setfacl") is None, reason="needs setfacl (acl)")


def kernel_blob(path: Path) -> bytes | None:
    """Stat.acl of a real file, read the way LocalFileSystem reads it."""
    values = []
    for name in (ACCESS_XATTR, DEFAULT_XATTR):
        try:
            values.append(os.getxattr(path, name, follow_symlinks=False))
        except OSError:
            values.append(None)
    return pack_acl_blob(*values)


@pytest.fixture(scope="module")
def acl_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("setfacl") is None:
        pytest.skip("needs setfacl (acl)")
    top = tmp_path_factory.mktemp("acls") / "src"
    TREES.build_acl_tree(top, TREES.ACL_TREE)
    return top


@needs_setfacl
@pytest.mark.parametrize("case", ACL_CASES)
def test_our_file_list_is_the_real_senders_byte_for_byte(case: str, acl_tree: Path) -> None:
    """FlistEncoder with the files' kernel ACLs writes the list rsync wrote (with inline
    names under incremental recursion)."""
    golden = goldens.load(case)
    decoded = goldens.decode_flist(golden)
    for d in decoded.entries:
        assert (d.acl is None) == stat.S_ISLNK(d.entry.mode)
    encoded = goldens.encode_flist(
        golden, decoded, lambda d: {"acl": kernel_blob(acl_tree / d.entry.name.decode())}
    )
    assert encoded == decoded.list_bytes


@needs_setfacl
def test_acl_sender_records_the_ids_for_the_id_lists(acl_tree: Path) -> None:
    sender = AclSender()
    for name in TREES.ACL_TREE:
        path = acl_tree / name
        mode = os.lstat(path).st_mode
        sender.encode(*rsync_acls(kernel_blob(path), mode), mode)
    assert list(sender.user_ids) == [1, 1234] and list(sender.group_ids) == [4]


@needs_setfacl
@pytest.mark.parametrize("case", ACL_CASES)
def test_received_acls_give_back_the_files_acls(case: str, acl_tree: Path) -> None:
    golden = goldens.load(case)
    decoded = goldens.decode_flist(golden)
    for d in decoded.entries:
        if d.acl is None:
            continue
        access = decoded.acls.access[d.acl[0]]
        default = None if d.acl[1] is None else decoded.acls.default[d.acl[1]]
        path = acl_tree / d.entry.name.decode()
        assert acl_blob_from_rsync(access, default, d.entry.mode) == kernel_blob(path)
        assert os.lstat(path).st_mode == d.entry.mode
    f1, f2 = decoded.by_name[b"f1"].acl, decoded.by_name[b"f2"].acl
    assert f1 == f2  # the same ACL is sent once, then by index


def test_inline_names_with_incremental_recursion() -> None:
    decoded = goldens.decode_flist(goldens.load("push-a-incr-p32"))
    d1 = decoded.by_name[b"d1"].acl
    assert d1 is not None and d1[1] is not None
    (user,) = decoded.acls.access[d1[0]].names
    assert user == IdAccess(1, 7, True) and user.name == b"daemon"
    names = decoded.acls.default[d1[1]].names
    assert [(n.id, n.is_user, n.name) for n in names] == [(1, True, None), (4, False, b"adm")]
    decoded.acls.map_ids(lambda is_user, ident, name: ident + (1000 if name else 0))
    assert decoded.acls.access[d1[0]].names[0].id == 1001


@needs_setfacl
def test_acls_differ_like_the_real_generator(tmp_path: Path, acl_tree: Path) -> None:
    golden = goldens.load("push-a-update-p32")
    decoded = goldens.decode_flist(golden)
    TREES.build_acl_tree(tmp_path / "dst", TREES.ACL_OLD)
    index = goldens.sorted_entries(decoded, golden.protocol)
    records = goldens.generator_records(golden, goldens.mirror_sender(decoded), index)
    reported = {index[r.ndx].entry.name for r, _, _ in records if r.iflags & ITEM_REPORT_ACL}
    ours = set()
    for d in index:
        path = tmp_path / "dst" / d.entry.name.decode()
        if d.acl is None or not path.exists() or path.is_symlink():
            continue
        access = decoded.acls.access[d.acl[0]]
        default = None if d.acl[1] is None else decoded.acls.default[d.acl[1]]
        current = os.lstat(path).st_mode
        if acls_differ(kernel_blob(path), current, access, default, d.entry.mode):
            ours.add(d.entry.name)
    assert ours == reported == {b"f2", b"f3", b"d1"}
    assert [line.split()[1] for line in golden.itemized if ".a." in line] == ["f2", "f3", "d1/"]


def test_the_whole_list_decodes_a_byte_at_a_time() -> None:
    golden = goldens.load("push-a-p32")
    whole = goldens.decode_flist(golden)
    trickled = goldens.decode_flist(golden, feed=1)
    assert [d.acl for d in trickled.entries] == [d.acl for d in whole.entries]
    assert trickled.acls.access == whole.acls.access
    assert trickled.acls.default == whole.acls.default


@needs_setfacl
def test_acl_xattrs_set_through_the_kernel_read_back_equal(tmp_path: Path, acl_tree: Path) -> None:
    """What acl_xattrs writes is what the kernel keeps, for a file of another mode too."""
    for name, (content, _, _) in TREES.ACL_TREE.items():
        blob = kernel_blob(acl_tree / name)
        target = tmp_path / name.replace("/", "_")
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(b"")
        mode = stat.S_IFMT(os.lstat(target).st_mode) | 0o751
        os.chmod(target, 0o751)
        access, default = acl_xattrs(blob, mode)
        if access is not None:
            os.setxattr(target, ACCESS_XATTR, access)
        if default is not None:
            os.setxattr(target, DEFAULT_XATTR, default)
        assert kernel_blob(target) == blob, name
        assert os.lstat(target).st_mode == mode  # the mode carried its entries


def test_blob_format() -> None:
    entries = [
        (ACL_OTHER, 5, ACL_UNDEFINED_ID),
        (ACL_GROUP, 4, 20),
        (ACL_USER, 6, 1000),
        (ACL_MASK, 6, ACL_UNDEFINED_ID),
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_USER, 4, 10),
    ]
    value = pack_posix_acl(entries)
    assert [e[0] for e in parse_posix_acl(value)] == [1, 2, 2, 4, 8, 0x10, 0x20]
    assert [e[2] for e in parse_posix_acl(value)][1:3] == [10, 1000]
    blob = pack_acl_blob(value, None)
    assert blob is not None
    stored = parse_posix_acl(blob[4:])
    # mode-carried perms are stored as 0: user, other and (with a mask) the mask
    assert [p for t, p, _ in stored if t in (ACL_USER_OBJ, ACL_MASK, ACL_OTHER)] == [0, 0, 0]
    assert [p for t, p, _ in stored if t == ACL_GROUP_OBJ] == [4]
    minimal = pack_posix_acl([(ACL_USER_OBJ, 6, -1 & 0xFFFFFFFF), (4, 4, ACL_UNDEFINED_ID)])
    assert pack_acl_blob(minimal, pack_posix_acl([])) is None
    access, default = acl_xattrs(blob, stat.S_IFREG | 0o640)
    assert default is None and access is not None
    carried = {t: p for t, p, _ in parse_posix_acl(access) if t in (1, 0x10, 0x20)}
    assert carried == {ACL_USER_OBJ: 6, ACL_MASK: 4, ACL_OTHER: 0}
    for bad in (b"", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00\x01", value + b"\x40\x00" * 4):
        with pytest.raises(ValueError):
            parse_posix_acl(bad)


def test_rsync_view_of_plain_files_and_dirs() -> None:
    assert rsync_acls(None, stat.S_IFREG | 0o640) == (RsyncAcl(6, 4, None, 0), None)
    assert rsync_acls(None, stat.S_IFDIR | 0o755) == (RsyncAcl(7, 5, None, 5), EMPTY_ACL)
    full = RsyncAcl(7, 5, None, 5)
    assert full.stripped(0o755) == EMPTY_ACL
    # an empty default ACL deletes the default; a minimal access ACL is the mode
    assert acl_blob_from_rsync(EMPTY_ACL, EMPTY_ACL, stat.S_IFDIR | 0o755) is None
    assert not acls_differ(None, stat.S_IFDIR | 0o700, EMPTY_ACL, EMPTY_ACL, stat.S_IFDIR | 0o755)


perms = st.integers(0, 7)
named = st.lists(
    st.tuples(st.booleans(), st.integers(0, 70000), perms), max_size=5, unique_by=lambda n: n[:2]
)


def _blob(names: list, group: int, with_mask: bool, default: list | None) -> bytes | None:
    undefined = ACL_UNDEFINED_ID
    entries = [(ACL_USER_OBJ, 0, undefined), (ACL_GROUP_OBJ, group, undefined)]
    entries += [(ACL_USER if u else ACL_GROUP, p, i) for u, i, p in names]
    if names or with_mask:
        entries.append((ACL_MASK, 0, undefined))
    entries.append((ACL_OTHER, 0, undefined))
    default_value = None
    if default is not None:
        d = [(ACL_USER_OBJ, 7, undefined), (ACL_GROUP_OBJ, 5, undefined), (ACL_OTHER, 1, undefined)]
        d += [(ACL_USER if u else ACL_GROUP, p, i) for u, i, p in default]
        if default:
            d.append((ACL_MASK, 7, undefined))
        default_value = pack_posix_acl(d)
    return pack_acl_blob(pack_posix_acl(entries), default_value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(named, perms, st.booleans(), st.none() | named, st.integers(0, 0o7777)),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_round_trip(files: list, directories: bool) -> None:
    """Stat.acl -> rsync view -> wire -> received -> Stat.acl is the identity."""
    kind = stat.S_IFDIR if directories else stat.S_IFREG
    sender, receiver = AclSender(), AclReceiver()
    for names, group, with_mask, default, bits in files:
        mode = kind | bits
        blob = _blob(names, group, with_mask, default if directories else None)
        access, dflt = rsync_acls(blob, mode)
        data = sender.encode(access, dflt, mode)
        buf = ReceiveBuffer()
        for byte in data[:-1]:
            buf.extend(bytes([byte]))
            assert read_item(buf, lambda c, m=mode: receiver.read(c, m)) is None
        buf.extend(data[-1:])
        got = read_item(buf, lambda c, m=mode: receiver.read(c, m))
        assert got is not None and len(buf) == 0
        got_access = receiver.access[got[0]]
        got_default = None if got[1] is None else receiver.default[got[1]]
        assert acl_blob_from_rsync(got_access, got_default, mode) == blob
        assert not acls_differ(blob, mode, got_access, got_default, mode)
    assert len(receiver.access) == len(sender.access)


def test_malformed_input_is_refused() -> None:
    receiver = AclReceiver()
    with pytest.raises(RemoteProtocolError, match="ACL_TYPE_ACCESS ACL index 2 > 0") as info:
        read_item(ReceiveBuffer(b"\x02"), lambda c: receiver.read(c, 0o100644))
    assert info.value.exit_code == 12
    with pytest.raises(RemoteProtocolError, match="value out of range: 9") as info:
        read_item(ReceiveBuffer(b"\x00\x02\x09"), lambda c: receiver.read(c, 0o100644))
    assert info.value.exit_code == 12
    names = b"\x00\x10\x01" + pack_varint(5) + pack_varint(8 << 2)
    with pytest.raises(RemoteProtocolError, match="value out of range: 8"):
        read_item(ReceiveBuffer(names), lambda c: receiver.read(c, 0o100644))
    with pytest.raises(RemoteProtocolError, match="ACL count out of range"):
        read_item(ReceiveBuffer(b"\x00\x10" + pack_varint(1 << 20)), lambda c: receiver.read(c, 0))
    good_access = b"\x00\x00"
    with pytest.raises(RemoteProtocolError, match="ACL_TYPE_DEFAULT ACL index 5 > 0"):
        read_item(ReceiveBuffer(good_access + b"\x05"), lambda c: receiver.read(c, 0o40755))
    assert receiver.access == [] and receiver.default == []  # nothing committed


def test_missing_mask_is_computed() -> None:
    """recv_rsync_acl: access from the mode's group bits, default from the entries."""
    data = b"\x00" + bytes([0x10]) + pack_varint(1) + pack_varint(7) + pack_varint(5 << 2 | 2)
    data += b"\x00" + bytes([0x1B]) + pack_varint(7) + pack_varint(1) + pack_varint(0)
    data += pack_varint(1) + pack_varint(9) + pack_varint(6 << 2)
    receiver = AclReceiver()
    assert read_item(ReceiveBuffer(data), lambda c: receiver.read(c, 0o40730)) == (0, 0)
    assert receiver.access[0].mask_obj == 3
    assert receiver.default[0].mask_obj == 7  # group 1 | named group 6
