"""What rsyncd-py counts as bytes read, against rsync 3.2.7.

rsync counts its input only from io_start_buffering_in / io_start_multiplex_in on: the
handshake (versions, compat flags, checksum and compression lists) is read unbuffered
and uncounted. The count shows as the pulling client's "Total bytes sent" (the server
sender's stats.total_read) and in "connection unexpectedly closed (N bytes received so
far)" (tests/interop/test_errors.py compares those lines).
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.rsync_harness import RsyncHarness
from tests.helpers.trees import write_file


@pytest.mark.parametrize("args", [(), ("--protocol=29",), ("-z",)], ids=["32", "29", "z"])
def test_a_pulls_total_bytes_sent_is_rsyncs(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    sent = []
    for target in (h.oracle(), h.rsyncd_root()):
        write_file(target.home / "src" / "a", os.urandom(100_000), 1_600_000_000_000_000_000)
        write_file(target.home / "src" / "b", b"hi\n", 1_600_000_000_000_000_000)
        pull = ["-a", "--stats", *args, "lh:src/", f"pulled-{target.name}/"]
        result = h.run(target, pull, tree=None)
        assert result.returncode == 0, result.describe()
        sent.append(result.stats["Total bytes sent"])
    assert sent[0] == sent[1]
