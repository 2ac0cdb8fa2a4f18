"""forget: which snapshots a retention policy keeps, and removing the others.

The policy is restic's: walking snapshots from newest to oldest,
- `last` keeps the newest N snapshots;
- `daily`, `weekly`, `monthly` keep the newest snapshot of each of the N most recent
  days, ISO weeks and months (UTC) that have any snapshot.
A snapshot is kept if any rule keeps it; the rest are deleted (only the snapshot
objects: the data they alone referenced is removed by the next gc). A policy that
keeps nothing is refused rather than emptying the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from blockstore.volume.snapshots import Snapshot
from blockstore.volume.volume import Volume

BucketKey = Callable[[dt.datetime], object]

_RULES: dict[str, BucketKey] = {
    "daily": lambda when: when.date(),
    "weekly": lambda when: when.isocalendar()[:2],
    "monthly": lambda when: (when.year, when.month),
}


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    """How many snapshots each rule keeps (0: the rule is off)."""

    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        if min(self.last, self.daily, self.weekly, self.monthly) < 0:
            raise ValueError("keep counts must not be negative")
        if not (self.last or self.daily or self.weekly or self.monthly):
            raise ValueError("the policy keeps no snapshot: give at least one --keep-* count")


@dataclass(frozen=True, slots=True)
class Decision:
    """One snapshot's fate and the rules that keep it (empty: it is removed)."""

    snapshot: Snapshot
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def apply_policy(snapshots: Sequence[Snapshot], policy: KeepPolicy) -> list[Decision]:
    """Decide for each snapshot (returned newest first)."""
    newest_first = sorted(snapshots, key=lambda s: s.id, reverse=True)
    budget = {"last": policy.last, "daily": policy.daily, "weekly": policy.weekly,
              "monthly": policy.monthly}  # fmt: skip
    last_bucket: dict[str, object] = {}
    decisions = []
    for snap in newest_first:
        when = dt.datetime.fromtimestamp(snap.time_ns / 1e9, dt.UTC)
        reasons = []
        if budget["last"] > 0:
            budget["last"] -= 1
            reasons.append("last")
        for rule, bucket_of in _RULES.items():
            bucket = bucket_of(when)
            if budget[rule] > 0 and last_bucket.get(rule) != bucket:
                budget[rule] -= 1
                last_bucket[rule] = bucket
                reasons.append(rule)
        decisions.append(Decision(snap, tuple(reasons)))
    return decisions


def forget(volume: Volume, policy: KeepPolicy, *, dry_run: bool = False) -> list[Decision]:
    """Apply `policy` to `volume`'s snapshots; delete the others unless `dry_run`."""
    decisions = apply_policy(list(volume.snapshots.all()), policy)
    if not dry_run:
        volume.check_writable()
        for decision in decisions:
            if not decision.keep:
                volume.snapshots.delete(decision.snapshot.id)
    return decisions
