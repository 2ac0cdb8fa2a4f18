"""The value syntaxes inside rsync options, with rsync's error text.

Sizes (``-B``, ``--max-size``, ``--bwlimit``, ``--max-alloc``) and log formats
(``--log-format``).
"""

from __future__ import annotations

import re

__all__ = ["do_big_num", "log_format_has", "parse_size_arg"]

_SIZE_MAX = 2**63 - 1  # SIZE_MAX / 2 on a 64-bit build
_UNIT_POWERS = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_LEADING_NUMBER = re.compile(r"[0-9]*(?:\.[0-9]*)?")
_FORMAT_ESCAPE = re.compile(r"%'*-?[0-9]*'*(.?)")


def do_big_num(num: int, human_flag: int) -> str:
    """`lib/compat.c:do_big_num` for the flags option errors use (0, or 3 = units of 1024)."""
    if human_flag > 1:
        mult = 1000 if human_flag == 2 else 1024
        if abs(num) >= mult:
            value = abs(num) / mult
            units = "P"
            for unit in "KMGT":
                if value < mult:
                    units = unit
                    break
                value /= mult
            return f"{-value if num < 0 else value:.2f}{units}"
    return f"{num:,}" if human_flag else str(num)


def parse_size_arg(
    size_arg: str,
    default_suffix: str,
    opt_name: str,
    min_value: int,
    max_value: int,
    *,
    unlimited_0: bool = False,
) -> tuple[int, str | None]:
    """`options.c:parse_size_arg`: returns (size, None), or (-1, rsync's error text).

    Syntax: digits, an optional fraction, an optional unit (b k m g t p, any case; the
    default is `default_suffix`), then ``b`` for powers of 1000 or ``ib``/nothing for
    1024, and an optional ``+1``/``-1``. `max_value` < 0 means no maximum.
    """
    limit_max = max_value if max_value >= 0 else _SIZE_MAX
    number = _LEADING_NUMBER.match(size_arg)
    assert number is not None  # the pattern matches the empty string
    rest = size_arg[number.end() :]

    def failure(
        err: str = "invalid", min_max: str | None = None, limit: int = -1
    ) -> tuple[int, str]:
        text = f"--{opt_name}={size_arg} is {err}"
        if min_max and limit >= 0:
            zero = " or 0 for unlimited" if unlimited_0 and min_max == "min" else ""
            text += f" ({min_max}: {do_big_num(limit, 3)}{zero})"
        return -1, text

    if rest and rest[0] not in "+-":
        unit, rest = rest[0], rest[1:]
    else:
        unit = default_suffix
    reps = _UNIT_POWERS.get(unit.lower())
    if reps is None:
        return failure()
    if rest[:1] in ("b", "B"):
        mult, rest = 1000, rest[1:]
    elif not rest or rest[0] in "+-":
        mult = 1024
    elif rest[:2].lower() == "ib":
        mult, rest = 1024, rest[2:]
    else:
        return failure()
    size = 1
    for _ in range(reps):
        if size > limit_max // mult:
            return failure("too large", "max", max_value)
        size *= mult
    dsize = float(number.group(0)) if number.group(0) not in ("", ".") else 0.0
    if dsize > limit_max / size or (max_value < 0 and dsize >= limit_max / size):
        return failure("too large", "max", max_value)
    size = int(dsize * size)
    if rest[:2] in ("+1", "-1") and len(rest) < len(size_arg):
        if rest[0] == "+":
            if size == limit_max:
                return failure("too large", "max", max_value)
            size += 1
        else:
            size -= 1
        rest = rest[2:]
    if rest:
        return failure()
    if size < 0 or (max_value >= 0 and size > max_value):
        return failure("too large", "max", max_value)
    if size < min_value and not (unlimited_0 and size == 0):
        return failure("too small", "min", min_value)
    return size, None


def log_format_has(log_format: str | None, escape: str) -> bool:
    """`log.c:log_format_has`: whether `log_format` uses the ``%<escape>`` item."""
    if not log_format:
        return False
    pos = 0
    while (pos := log_format.find("%", pos)) >= 0:
        m = _FORMAT_ESCAPE.match(log_format, pos)
        assert m is not None
        letter = m.group(1)
        if not letter:
            return False
        if letter == escape:
            return True
        # "%%" is a literal percent sign, not the start of another escape
        pos = m.end() if letter == "%" else m.end() - 1
    return False
