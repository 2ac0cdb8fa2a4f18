"""The xattr codec (protocol/xattrs.py) against real rsync 3.2.7 and itself.

Goldens (tests/data/protocol/xattrs_acls): the real sender's file lists decode to the
trees make_captures.py built, and our XattrSender writes the same bytes for them; the
real generator's requests are the ones our XattrReceiver.diff asks for, byte for byte;
the real sender's answers give the values back. Round trips, byte-at-a-time feeding and
malformed input complete it.
"""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import (
    ITEM_LOCAL_CHANGE,
    ITEM_REPORT_XATTR,
    ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
)
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.ints import pack_varint, read_item
from rsyncd_py.protocol.xattrs import (
    MAX_FULL_DATUM,
    XattrReceiver,
    XattrSender,
    local_xattrs,
    make_xattr_set,
    receiver_keeps,
    request_follows,
    sender_keeps,
    xattr_digest,
)
from tests.protocol import attr_goldens as goldens

TREES = goldens.trees()
XATTR_CASES = ["push-x-p32", "push-x-update-p32", "push-x-p30", "pull-x-update-p32"]


def _tree_pairs(tree: dict, name: bytes) -> tuple[tuple[bytes, bytes], ...]:
    if name in (b".", b"link"):
        return ()
    return tuple(sorted((k.encode(), v) for k, v in tree[name.decode()][1].items()))


def _matches(items: tuple, pairs: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether a received set describes `pairs` (abbreviated values by digest)."""
    if len(items) != len(pairs):
        return False
    for item, (name, value) in zip(items, pairs, strict=True):
        if item.name != name or item.length != len(value):
            return False
        if item.abbreviated:
            if item.value is not None or item.digest != xattr_digest(value):
                return False
        elif item.value != value:
            return False
    return True


@pytest.mark.parametrize("case", XATTR_CASES)
def test_real_senders_lists_decode_to_the_tree(case: str) -> None:
    golden = goldens.load(case)
    decoded = goldens.decode_flist(golden)
    assert len(decoded.entries) >= 7
    for d in decoded.entries:
        items = decoded.xattrs.xattr_set(d.xattr)
        assert _matches(items, _tree_pairs(TREES.XATTR_TREE, d.entry.name)), d.entry.name
    # a and b carry the same set: the second names it by index
    assert decoded.by_name[b"a"].xattr == decoded.by_name[b"b"].xattr
    # (), a/b, c, sub and sub/e's; incremental recursion sends sub/ in a later list
    assert len(decoded.xattrs.sets) == (4 if golden.inc_recurse else 5)


@pytest.mark.parametrize("case", XATTR_CASES)
def test_our_file_list_is_the_real_senders_byte_for_byte(case: str) -> None:
    """FlistEncoder with the tree's xattrs writes the list rsync wrote."""
    golden = goldens.load(case)
    decoded = goldens.decode_flist(golden)
    expected = [d.xattr for d in decoded.entries]
    pairs = {d.entry.name: _tree_pairs(TREES.XATTR_TREE, d.entry.name) for d in decoded.entries}
    # trusted.* and system.* names as a sender sees them: system.* never travels
    extra = ((b"system.posix_acl_access", b"\x02\0\0\0"),)
    encoded = goldens.encode_flist(
        golden, decoded, lambda d: {"xattrs": pairs[d.entry.name] + extra}
    )
    assert encoded == decoded.list_bytes
    assert [d.xattr for d in decoded.entries] == expected  # the encoder left the indexes


def test_the_whole_list_decodes_a_byte_at_a_time() -> None:
    golden = goldens.load("push-x-update-p32")
    whole = goldens.decode_flist(golden)
    trickled = goldens.decode_flist(golden, feed=1)
    assert [d.xattr for d in trickled.entries] == [d.xattr for d in whole.entries]
    assert trickled.xattrs.sets == whole.xattrs.sets
    assert trickled.rest == whole.rest


def _local_old(name: bytes) -> tuple[tuple[bytes, bytes], ...] | None:
    old = TREES.XATTR_OLD.get(name.decode())
    if old is None:
        return None
    return tuple(sorted((k.encode(), v) for k, v in old[1].items()))


@pytest.mark.parametrize("case", ["push-x-update-p32", "pull-x-update-p32"])
def test_requests_equal_the_real_generators(case: str) -> None:
    """Our generator asks for exactly what rsync's asked for, in the same bytes."""
    golden = goldens.load(case)
    decoded = goldens.decode_flist(golden)
    index = goldens.sorted_entries(decoded, golden.protocol)
    records = goldens.generator_records(golden, goldens.mirror_sender(decoded), index)
    ours = XattrReceiver()
    ours.sets = list(decoded.xattrs.sets)
    requested = {}
    for record, nums, raw in records:
        entry = index[record.ndx]
        local = _local_old(entry.entry.name)
        have = None if local is None else local_xattrs(local, am_root=True)
        differs, wanted = ours.diff(entry.xattr, have)
        assert bool(record.iflags & ITEM_REPORT_XATTR) == differs  # new files too
        if nums is not None:
            assert wanted == nums
            assert ours.pack_request(entry.xattr, wanted) == raw
            requested[entry.entry.name] = nums
    # c is new (its 33-byte value), sub/e's user.long differs. b's differs too, but it
    # shares a's set and a's record (equal value) went out first: rsync never asks for
    # an item twice and takes the value it found on a.
    assert requested == {b"a": (), b"b": (), b"c": (3,), b"sub/e": (1,)}
    assert [line.split()[0] for line in golden.itemized][:2] == [".f........x"] * 2


def test_the_answers_give_the_values_back() -> None:
    """The client (sender) answers the real generator; with what the generator found
    on the old files, its values resolve every set."""
    golden = goldens.load("push-x-update-p32")
    decoded = goldens.decode_flist(golden)
    index = goldens.sorted_entries(decoded, golden.protocol)
    receiver = decoded.xattrs
    for entry in index:  # the generator's pass (it learns a's user.long)
        local = _local_old(entry.entry.name)
        receiver.diff(entry.xattr, local)
    answered = {
        index[record.ndx].entry.name: count
        for record, count in goldens.sender_records(golden, decoded, index)
    }
    assert answered == {b"a": 0, b"b": 0, b"c": 1, b"link": 0, b"sub/e": 1}
    for name in (b"a", b"b", b"c", b"sub/e"):
        pairs, missing = receiver.resolve(decoded.by_name[name].xattr, None)
        assert missing == ()
        assert pairs == _tree_pairs(TREES.XATTR_TREE, name)


def test_sender_answers_requests_and_refuses_a_second_one() -> None:
    pairs = [(b"user.big", b"x" * 100), (b"user.small", b"s"), (b"user.big2", b"y" * 40)]
    sender = XattrSender()
    _, ndx = sender.encode(pairs)
    request = pack_varint(1) + pack_varint(1) + b"\0"  # nums 1 and 2: user.big, user.big2
    nums = read_item(ReceiveBuffer(request), lambda c: sender.read_request(c, ndx, b"f"))
    assert nums == (1, 2)
    assert all(item.value is None for item in sender.sets[ndx] if item.abbreviated)
    # the values are read again: one has changed length, one is gone
    answer, gone = sender.pack_answer(ndx, nums, {b"user.big": b"x" * 101})
    assert answer == pack_varint(1) + pack_varint(101) + b"x" * 101 + pack_varint(1) + (
        pack_varint(0) + b"\0"
    )
    assert gone == (b"user.big2",)
    with pytest.raises(RemoteProtocolError, match=r"internal abbrev error on f \(user.big"):
        read_item(ReceiveBuffer(request), lambda c: sender.read_request(c, ndx, b"f"))
    with pytest.raises(RemoteProtocolError, match="internal abbrev error"):
        read_item(ReceiveBuffer(b"\x03\0"), lambda c: sender.read_request(c, ndx, b"f"))
    with pytest.raises(RemoteProtocolError, match=r"\[sender\] could not find xattr #9 for f"):
        read_item(ReceiveBuffer(b"\x09\0"), lambda c: sender.read_request(c, ndx, b"f"))


pair_lists = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=12).map(lambda n: b"user." + n.replace(b"\0", b"_")),
        st.binary(max_size=80),
    ),
    max_size=6,
    unique_by=lambda p: p[0],
)


@settings(max_examples=150, deadline=None)
@given(st.lists(pair_lists, min_size=1, max_size=5), st.lists(pair_lists, max_size=5))
def test_round_trip_with_requests(sets: list, locals_: list) -> None:
    """Encode sets, decode them, request what differs, answer, resolve: the originals."""
    sender, receiver = XattrSender(), XattrReceiver()
    for i, pairs in enumerate(sets):
        data, ndx = sender.encode(pairs)
        buf = ReceiveBuffer()
        for byte in data[:-1]:  # a byte at a time: nothing happens until the end
            buf.extend(bytes([byte]))
            assert read_item(buf, receiver.read) is None
        buf.extend(data[-1:])
        assert read_item(buf, receiver.read) == ndx
        local = tuple(sorted(locals_[i])) if i < len(locals_) else None
        differs, wanted = receiver.diff(ndx, local)
        assert differs == (tuple(sorted(pairs)) != (local or ()))
        request = receiver.pack_request(ndx, wanted)
        nums = read_item(ReceiveBuffer(request), lambda c, n=ndx: sender.read_request(c, n, b""))
        answer = ReceiveBuffer(sender.pack_answer(ndx, nums, dict(pairs))[0])
        reader = receiver.answer_reader(ndx)
        while not read_item(answer, reader.read):
            pass
        assert len(answer) == 0
        assert receiver.resolve(ndx, local) == (tuple(sorted(pairs)), ())
    assert len(receiver.sets) == len(sender.sets) == len({tuple(sorted(p)) for p in sets})


def test_each_item_is_asked_for_once_and_values_serve_every_set() -> None:
    receiver = XattrReceiver()
    sender = XattrSender()
    big = b"B" * 64
    for pairs in ([(b"user.a", big)], [(b"user.a", big), (b"user.b", b"1")]):
        data, _ = sender.encode(pairs)
        read_item(ReceiveBuffer(data), receiver.read)
    # a file with the first set has the value already: learned, nothing to ask
    assert receiver.diff(0, [(b"user.a", big)]) == (False, ())
    # another set is another item for rsync's generator: asked for, although the
    # learned value would serve (the sender answers what it is asked)
    assert receiver.diff(1, None) == (True, (1,))
    assert receiver.resolve(1, None) == (((b"user.a", big), (b"user.b", b"1")), ())
    receiver.pack_request(1, (1,))
    assert receiver.diff(1, None) == (True, ())  # dealt with: never asked for again
    # once its record went out, a matching item counts as dealt with too
    assert receiver.diff(0, None) == (True, (1,))
    receiver.pack_request(0, ())
    assert receiver.diff(0, None) == (True, ())
    other = XattrReceiver()
    other.sets = list(receiver.sets)
    assert other.resolve(1, None) == (((b"user.b", b"1"),), (b"user.a",))


def test_malformed_input_is_refused() -> None:
    receiver = XattrReceiver()
    with pytest.raises(RemoteProtocolError, match="xa index 3 out of range for f") as info:
        read_item(ReceiveBuffer(b"\x03"), lambda c: receiver.read(c, b"f"))
    assert info.value.exit_code == 12
    no_nul = b"\x00\x01" + pack_varint(3) + pack_varint(1) + b"abcv"
    with pytest.raises(RemoteProtocolError, match="missing trailing") as info:
        read_item(ReceiveBuffer(no_nul), receiver.read)
    assert info.value.exit_code == 11
    with pytest.raises(RemoteProtocolError, match="xattr count out of range"):
        read_item(ReceiveBuffer(b"\x00" + pack_varint(70000)), receiver.read)
    huge = b"\x00\x01\x02" + pack_varint(5 << 20)
    with pytest.raises(RemoteProtocolError, match="per-value limit"):
        read_item(ReceiveBuffer(huge), receiver.read)
    assert receiver.sets == []
    data, _ = XattrSender().encode([(b"user.s", b"short"), (b"user.l", b"L" * 50)])
    read_item(ReceiveBuffer(data), receiver.read)
    reader = receiver.answer_reader(0, b"f")
    with pytest.raises(RemoteProtocolError, match=r"\[receiver\] internal abbrev error on f"):
        read_item(ReceiveBuffer(b"\x02\x01x"), reader.read)  # user.s is not abbreviated
    with pytest.raises(RemoteProtocolError, match="could not find xattr #7"):
        read_item(ReceiveBuffer(b"\x07\x01x"), receiver.answer_reader(0, b"f").read)


def test_namespaces() -> None:
    assert sender_keeps(b"trusted.x", level=1) and sender_keeps(b"user.x", level=1)
    assert not sender_keeps(b"system.posix_acl_access", level=2)
    assert not sender_keeps(b"user.rsync.%stat", level=1)
    assert sender_keeps(b"user.rsync.%stat", level=2) and sender_keeps(b"user.rsync.x", level=1)
    assert receiver_keeps(b"trusted.x", am_root=True, level=1)
    assert not receiver_keeps(b"trusted.x", am_root=False, level=1)
    assert not receiver_keeps(b"security.x", am_root=False, level=2)
    assert not receiver_keeps(b"system.x", am_root=True, level=2)
    assert not receiver_keeps(b"user.rsync.%aacl", am_root=True, level=1)
    assert receiver_keeps(b"user.rsync.%aacl", am_root=True, level=2)
    pairs = ((b"security.selinux", b"c"), (b"system.x", b"s"), (b"user.a", b"u"))
    assert local_xattrs(pairs, am_root=True) == pairs[::2]
    assert local_xattrs(pairs, am_root=False) == pairs[2:]


def test_a_non_root_receiver_keeps_user_names_but_counts_every_item() -> None:
    data, _ = XattrSender().encode([(b"trusted.t", b"T" * 40), (b"user.u", b"U" * 40)])
    receiver = XattrReceiver(am_root=False)
    read_item(ReceiveBuffer(data), receiver.read)
    (item,) = receiver.sets[0]
    assert item.name == b"user.u" and item.num == 2  # numbers stay the sender's


def test_request_follows_the_record_rules() -> None:
    assert not request_follows(ITEM_TRANSFER, want_optim=False)
    assert request_follows(ITEM_REPORT_XATTR | ITEM_TRANSFER, want_optim=True)
    hardlink = ITEM_REPORT_XATTR | ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS
    assert request_follows(hardlink, want_optim=False)
    assert not request_follows(hardlink, want_optim=True)


def test_make_xattr_set_numbers_sorted_names_and_digests_long_values() -> None:
    items = make_xattr_set([(b"user.z", b"z" * (MAX_FULL_DATUM + 1)), (b"user.a", b"a")])
    assert [(i.name, i.num) for i in items] == [(b"user.a", 1), (b"user.z", 2)]
    assert items[0].digest is None and items[1].digest == xattr_digest(b"z" * 33)


@pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* needs root")
def test_goldens_hold_what_make_captures_builds(tmp_path) -> None:
    """The trees in make_captures.py are real: building one gives those xattrs."""
    TREES.build_xattr_tree(tmp_path / "t", TREES.XATTR_TREE)
    for name, (_, xattrs) in TREES.XATTR_TREE.items():
        path = tmp_path / "t" / name
        got = {n: os.getxattr(path, n) for n in os.listxattr(path)}
        assert got == xattrs
        assert stat.S_ISDIR(os.lstat(path).st_mode) == (TREES.XATTR_TREE[name][0] is None)
