"""The push and pull option tables once more, with ``--no-inc-recursive``.

test_push.py and test_pull.py run every case the default way, which is with incremental
recursion wherever rsync would use it. Here the same cases run with the client's
``--no-inc-recursive`` (one complete file list), against ``--root``, so both ways of
listing files are held to real rsync's behaviour. Cases that cannot use incremental
recursion anyway (protocols below 30, the options that turn it off) and cases with a
known gap are left to the tables themselves.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from tests.helpers.rsync_harness import RsyncHarness, Target
from tests.interop import test_pull, test_push
from tests.interop.test_pull import templates  # noqa: F401 - the fixture test_pull needs

NO_INC = "--no-inc-recursive"
# options with which rsync lists everything first anyway (compat.c set_allow_inc_recurse)
NEVER_INCREMENTAL = (
    NO_INC,
    "--delete-before",
    "--delete-after",
    "--delay-updates",
    "-aim",
    "--protocol=29",
    "--protocol=28",
    "--protocol=27",
    "-dlpti",
)


def _without_inc(cases: list[test_push.Case] | list[test_pull.PullCase]) -> list[object]:
    params = []
    for case in cases:
        if case.gaps or any(arg in NEVER_INCREMENTAL for arg in case.args):
            continue
        params.append(pytest.param(replace(case, args=(*case.args, NO_INC)), id=case.id))
    return params


@pytest.mark.parametrize("case", _without_inc(test_push.CASES))
def test_push_table_without_inc_recursion(
    case: test_push.Case, rsync_harness: RsyncHarness, varied_tree: os.PathLike[str]
) -> None:
    test_push.test_push(case, "root", rsync_harness, varied_tree)


@pytest.mark.parametrize("case", _without_inc(test_pull.CASES))
def test_pull_table_without_inc_recursion(
    case: test_pull.PullCase,
    rsync_harness: RsyncHarness,
    templates: test_pull.Templates,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    ours: Target = rsync_harness.rsyncd_root()
    test_pull.test_pull(case, ours, rsync_harness, templates, request)
