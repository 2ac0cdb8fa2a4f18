"""What every subcommand that opens a store shares: its options, errors and opening.

The options are ``--store URL`` (default: ``$RSYNCD_PY_STORE``), ``--key-file F`` (an
encrypted store's key file; otherwise its passphrase comes from
``RSYNCD_PY_PASSPHRASE`` or a terminal prompt, see blockstore.keys) and ``--state-dir
D`` (the local cache and pack index). A problem the user can fix (no store given, a bad
URL, a wrong key, a locked store, a missing path) is a `UserError`: one line
``rsyncd-py COMMAND: ...`` on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blockstore.volume import Volume

STORE_ENV = "RSYNCD_PY_STORE"
PROG = "rsyncd-py"


class UserError(Exception):
    """A problem to report as one line (no traceback)."""


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--store``, ``--key-file`` and ``--state-dir`` to `parser`."""
    parser.add_argument("--store", default=os.environ.get(STORE_ENV),
                        help=f"store URL (default: ${STORE_ENV})")
    parser.add_argument("--key-file", help="key file of an encrypted store")
    parser.add_argument("--state-dir", help="local state (cache, pack index) directory")


def store_url(args: argparse.Namespace) -> str:
    """The store the command line names; UserError if it names none."""
    if not args.store:
        raise UserError(f"no store: pass --store URL or set {STORE_ENV}")
    return str(args.store)


@contextmanager
def opened_volume(
    args: argparse.Namespace, *, read_only: bool, lease: bool = False, **options: Any
) -> Iterator[Volume]:
    """The volume of `args`'s store, closed (and its lease released) on the way out.

    `lease` takes the writer lease first (``--force`` takes over a live one); `options`
    go to `open_volume` (e.g. ``cache_size=0``).
    """
    from blockstore.volume import open_volume

    volume = open_volume(store_url(args), key_file=args.key_file, state_dir=args.state_dir,
                         read_only=read_only, **options)
    try:
        if lease:
            volume.acquire_lease(force=args.force)
        yield volume
    finally:
        volume.close()
