"""The store subcommands: init, ls, cat, snapshots, fsck, gc, forget, stats, reindex.

Every command takes the store options of `store_options` (``--store``, ``--key-file``,
``--state-dir``) and reports a user error as one line and exit status 1. Read-only
commands open the store read-only and need no lease; gc and forget take the writer
lease (``--force`` takes over a live one). Figures go to stdout (``--json`` for
machines), diagnostics and progress to stderr; fsck exits 1 when it finds a problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from blockstore.backend import StoreError
from blockstore.volume import ChunkParams, TreeEntry, Volume, VolumeParams
from rsyncd_py.cli.store_options import (
    PROG,
    UserError,
    add_store_options,
    opened_volume,
    store_url,
)

# -- plumbing -------------------------------------------------------------------------------


def _runner(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: require --store, turn user errors into one line and status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            store_url(args)
            return command(args)
        except (UserError, StoreError, ValueError) as exc:
            print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"{PROG} {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where a long command reports its progress: stderr, unless the output is --json."""
    return None if args.json else lambda message: print(message, file=sys.stderr)


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _when(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _display(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace").replace("\n", "\\n")


def _size(value: object) -> str:
    amount = float(value)  # type: ignore[arg-type]
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


# -- init -----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from blockstore.factory import create_store

    params = VolumeParams(md5=args.md5, pack_size=args.pack_size)
    if args.chunk_size:
        params = VolumeParams(ChunkParams.for_average(args.chunk_size), args.pack_size, args.md5)
    config = create_store(args.store, encrypt=args.encrypt, key_file=args.key_file,
                          volume=params.to_config())
    kind = "encrypted" if args.encrypt else "unencrypted"
    chunk = params.chunk.avg_size + params.chunk.min_size
    print(f"created {kind} store {config.store_id} at {args.store} "
          f"(mean chunk {_size(chunk)}, packs {_size(params.pack_size)})")
    return 0


# -- ls, cat, snapshots ---------------------------------------------------------------------


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


def cmd_ls(args: argparse.Namespace) -> int:
    with opened_volume(args, read_only=True) as volume:
        snap = volume.snapshot(args.snapshot or "latest")
        ns = volume.namespace(snap)
        path = os.fsencode(args.path).strip(b"/")
        entry = ns.lookup(path)
        if entry is None:
            raise UserError(f"{args.path}: no such file or directory in snapshot {snap.id}")
        entries = ns.listdir(path) if entry.is_dir() else [entry]
        out = sys.stdout
        for item in entries:
            out.write(_ls_line(item) if args.long else _display(item.name or path) + "\n")
        return 0


def _ls_line(entry: TreeEntry) -> str:
    owner = _display(entry.user) if entry.user is not None else str(entry.uid)
    group = _display(entry.group) if entry.group is not None else str(entry.gid)
    name = _display(entry.name)
    if entry.link_target is not None:
        name += " -> " + _display(entry.link_target)
    return (f"{_mode_string(entry.mode)} {owner:>8} {group:>8} {entry.size:>14} "
            f"{_when(entry.mtime_ns)} {name}\n")


def cmd_cat(args: argparse.Namespace) -> int:
    with opened_volume(args, read_only=True) as volume:
        snap = volume.snapshot(args.snapshot or "latest")
        entry = volume.namespace(snap).lookup(os.fsencode(args.path).strip(b"/"))
        if entry is None:
            raise UserError(f"{args.path}: no such file in snapshot {snap.id}")
        if entry.content is None:
            raise UserError(f"{args.path}: not a regular file")
        out = sys.stdout.buffer
        for data in _stream(volume, entry):
            out.write(data)
        out.flush()
        return 0


def _stream(volume: Volume, entry: TreeEntry, ahead: int = 8) -> Iterator[bytes]:
    """A file's content in order, with `ahead` block fetches in flight."""
    assert entry.content is not None
    reader = volume.reader(entry.content)
    with ThreadPoolExecutor(4, thread_name_prefix="cat") as pool:
        inflight: deque[Future[bytes]] = deque()
        for block_id, _offset, length in reader.blocks(0):
            inflight.append(pool.submit(reader.fetch, block_id, length))
            if len(inflight) >= ahead:
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()


def cmd_snapshots(args: argparse.Namespace) -> int:
    with opened_volume(args, read_only=True) as volume:
        snaps = [volume.load_snapshot(i) for i in volume.snapshot_ids()]
    if args.json:
        _print_json([{"id": s.id, "time": _when(s.time_ns), "time_ns": s.time_ns,
                      "host": s.host, "parent": s.parent, "stats": dict(s.stats)}
                     for s in snaps])
        return 0
    for s in snaps:
        files, size = s.stats.get("files", 0), s.stats.get("bytes", 0)
        print(f"{s.id}  {_when(s.time_ns)}  {s.host}  {files} files, {_size(size)} written")
    return 0


# -- maintenance ----------------------------------------------------------------------------


def cmd_fsck(args: argparse.Namespace) -> int:
    from blockstore.volume.fsck import fsck

    # --read-data must check the bucket's bytes, not a locally cached copy
    options: dict[str, Any] = {"cache_size": 0} if args.read_data else {}
    with opened_volume(args, read_only=True, **options) as volume:
        report = fsck(volume, read_data=args.read_data, progress=_progress(args))
    if args.json:
        _print_json(report.to_dict())
    else:
        for problem in report.problems:
            print(f"error: {problem.describe()}")
        verb = "read and verified" if args.read_data else "checked"
        print(f"{report.snapshots} snapshots, {report.trees} trees, {report.files} files, "
              f"{report.blocks} blocks {verb}: "
              + ("no errors" if report.ok else f"{len(report.problems)} error(s)"))
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from blockstore.volume.gc import gc

    with opened_volume(args, read_only=False, lease=not args.dry_run) as volume:
        report = gc(volume, grace_seconds=args.grace, repack_threshold=args.repack_threshold,
                    dry_run=args.dry_run, progress=_progress(args))
    if args.json:
        _print_json(report.to_dict())
    else:
        would = "would " if args.dry_run else ""
        print(f"{would}drop {report.deleted_objects} unreferenced objects "
              f"({_size(report.deleted_bytes)}), keep {report.kept_in_grace} in grace; "
              f"{would}delete {report.deleted_packs} packs, repack {report.repacked_packs} "
              f"({_size(report.rewritten_bytes)} rewritten, "
              f"{_size(report.reclaimed_bytes)} reclaimed)")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from blockstore.volume.forget import KeepPolicy, forget

    policy = KeepPolicy(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
    with opened_volume(args, read_only=args.dry_run, lease=not args.dry_run) as volume:
        decisions = forget(volume, policy, dry_run=args.dry_run)
    if args.json:
        _print_json([{"id": d.snapshot.id, "keep": d.keep, "reasons": list(d.reasons)}
                     for d in decisions])
        return 0
    for d in decisions:
        fate = "keep   " if d.keep else ("would remove" if args.dry_run else "remove ")
        print(f"{fate} {d.snapshot.id}  {_when(d.snapshot.time_ns)}  {', '.join(d.reasons)}")
    removed = sum(1 for d in decisions if not d.keep)
    print(f"{removed} of {len(decisions)} snapshots {'would be ' if args.dry_run else ''}removed"
          + ("" if args.dry_run or not removed else "; run gc to free their data"))
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    with opened_volume(args, read_only=True) as volume:
        pack = volume.pack_layer
        if pack is None:
            raise UserError("this store has no pack layer to index")
        packs = pack.reindex()
        print(f"indexed {pack.index.count()} objects in {packs} packs")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from blockstore.volume.report import Prices, store_stats

    prices = Prices(args.price_storage, args.price_put, args.price_get)
    with opened_volume(args, read_only=True) as volume:
        figures = store_stats(volume, prices)
    if args.json:
        _print_json(figures)
        return 0
    f: dict[str, Any] = figures
    cost = f["monthly_cost"]
    print(f"snapshots       {f['snapshots']} (latest {f['latest_snapshot']})")
    print(f"files           {f['files']} in the latest snapshot")
    print(f"logical bytes   {_size(f['logical_bytes'])} latest, "
          f"{_size(f['logical_bytes_all'])} over all snapshots")
    print(f"unique bytes    {_size(f['unique_bytes'])} (dedup ratio {f['dedup_ratio']})")
    print(f"stored bytes    {_size(f['stored_bytes'])} "
          f"(compression ratio {f['compression_ratio']})")
    print(f"objects         {_pairs(f['objects'])}")
    print(f"last session    {_pairs(f['requests_last_session'])}")
    print(f"all sessions    {_pairs(f['requests_total'])}")
    print(f"monthly cost    ${cost['total']:.6f} (storage ${cost['storage']:.6f}, "
          f"requests in the last 30 days ${cost['requests_last_30_days']:.6f})")
    return 0


def _pairs(values: dict[str, object]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())


# -- registration ---------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register every store subcommand (called once by rsyncd_py.cli.main)."""

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=text, description=text)
        add_store_options(parser)
        parser.set_defaults(run=_runner(fn))
        return parser

    p = command("init", cmd_init, "create a new store")
    p.add_argument("--encrypt", action="store_true", help="encrypt (passphrase or --key-file)")
    p.add_argument("--chunk-size", type=int, default=0, help="mean chunk size in bytes")
    p.add_argument("--pack-size", type=int, default=VolumeParams().pack_size)
    p.add_argument("--md5", action="store_true", help="also record each file's MD5")

    p = command("ls", cmd_ls, "list a directory of a snapshot")
    p.add_argument("--snapshot", help="snapshot id or prefix (default: the newest)")
    p.add_argument("-l", dest="long", action="store_true", help="long listing")
    p.add_argument("path", nargs="?", default="")

    p = command("cat", cmd_cat, "write a file of a snapshot to stdout")
    p.add_argument("--snapshot", help="snapshot id or prefix (default: the newest)")
    p.add_argument("path")

    p = command("snapshots", cmd_snapshots, "list snapshots")
    p.add_argument("--json", action="store_true")

    p = command("fsck", cmd_fsck, "check that every snapshot's data is present and intact")
    p.add_argument("--read-data", action="store_true", help="download and verify every block")
    p.add_argument("--json", action="store_true")

    p = command("gc", cmd_gc, "delete data no snapshot references; repack sparse packs")
    p.add_argument("--grace", type=float, default=3600.0,
                   help="keep objects uploaded less than this many seconds ago")
    p.add_argument("--repack-threshold", type=float, default=0.5,
                   help="repack packs whose live fraction is below this")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--force", action="store_true", help="take over a live writer lease")
    p.add_argument("--json", action="store_true")

    p = command("forget", cmd_forget, "remove snapshots a retention policy does not keep")
    for rule in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--force", action="store_true", help="take over a live writer lease")
    p.add_argument("--json", action="store_true")

    command("reindex", cmd_reindex, "rebuild the local pack index from the bucket")

    p = command("stats", cmd_stats, "sizes, dedup and compression ratios, requests, cost")
    p.add_argument("--json", action="store_true")
    p.add_argument("--price-storage", type=float, default=0.023, help="$ per GB-month")
    p.add_argument("--price-put", type=float, default=0.005, help="$ per 1000 PUT/LIST")
    p.add_argument("--price-get", type=float, default=0.0004, help="$ per 1000 GET")
