"""A popt-compatible command-line scanner (the parsing rules rsync inherits from popt).

rsync parses its argv with popt (`popt/popt.c:poptGetNextOpt`), and a server must accept
exactly what popt accepts, with the same error text, because clients build the remote
command for that parser. The rules reproduced here:

- An element that does not start with ``-``, or is exactly ``-``, is a positional
  argument; options may follow positionals (popt permutes). ``--`` ends option parsing.
- ``--name`` and ``--name=value`` look up long names (exact match, no abbreviations).
  A single dash never names a long option in rsync's table: ``-name`` is a cluster.
- In a cluster (``-vlogDtpre.iLsfxCIvu``) each letter is a short option; an option that
  takes an argument consumes the rest of the cluster (one leading ``=`` is dropped), or
  the next argv element whatever it looks like, or fails with "missing argument".
- A flag given a value (``--verbose=3``, ``-v=3``) fails with "option does not take an
  argument".
- Integer arguments go through ``strtoll(val, &end, 0)`` (so ``0x10`` and ``010`` are
  hex and octal, and an empty string is 0) and must fit a C int.

Errors carry popt's message and the argv element popt blames (`poptBadOption`), which is
the element being parsed when the error occurred: the value's element for a bad number.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ArgKind", "PoptError", "PoptOption", "scan"]

_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
# strtoll(…, 0): optional space, sign, then a hex, octal or decimal body
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


class ArgKind(enum.Enum):
    """What an option takes: nothing (a flag), a C int, or a string."""

    NONE = "none"
    INT = "int"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class PoptOption:
    """One row of a popt option table.

    `action` is opaque to the scanner; the caller interprets it when the row matches.
    """

    long: str | None
    short: str | None
    kind: ArgKind
    action: object

    @property
    def display(self) -> str:
        """The option as a user would type it: ``--long`` or ``-s``."""
        return f"--{self.long}" if self.long else f"-{self.short}"


class PoptError(Exception):
    """A popt parse failure; ``str()`` is rsync's text: ``<bad option>: <reason>``."""

    def __init__(self, bad_option: str, reason: str) -> None:
        super().__init__(f"{bad_option}: {reason}")
        self.bad_option = bad_option
        self.reason = reason


def _parse_c_int(text: str, element: str) -> int:
    """Parse `text` as popt's POPT_ARG_INT does, blaming `element` on failure."""
    if text == "":
        return 0
    m = _STRTOLL.match(text)
    if m is None or m.end() != len(text):
        raise PoptError(element, "invalid numeric value")
    body = m.group(2)
    if body[:2].lower() == "0x":
        value = int(body, 16)
    elif body.startswith("0"):
        value = int(body, 8)
    else:
        value = int(body)
    if m.group(1) == "-":
        value = -value
    if not _INT_MIN <= value <= _INT_MAX:
        raise PoptError(element, "number too large or too small")
    return value


Handler = Callable[[PoptOption, int | str | None], None]


def scan(argv: Sequence[str], table: Iterable[PoptOption], handle: Handler) -> list[str]:
    """Scan `argv` (without a program name) against `table`, calling `handle` per option.

    Options are reported in argv order with their parsed value (None for flags, int for
    ArgKind.INT, str for ArgKind.STRING). `handle` may raise to stop the scan. Returns
    the positional arguments in order. Raises PoptError exactly where popt would fail.
    """
    by_long: dict[str, PoptOption] = {}
    by_short: dict[str, PoptOption] = {}
    for row in table:
        if row.long is not None:
            by_long.setdefault(row.long, row)
        if row.short is not None:
            by_short.setdefault(row.short, row)

    positionals: list[str] = []
    i = 0
    rest_are_positional = False
    while i < len(argv):
        element = argv[i]
        i += 1
        if rest_are_positional or not element.startswith("-") or element == "-":
            positionals.append(element)
            continue
        if element == "--":
            rest_are_positional = True
            continue

        if element.startswith("--"):
            name, eq, value_text = element[2:].partition("=")
            row = by_long.get(name)
            if row is None:
                raise PoptError(element, "unknown option")
            inline: str | None = value_text if eq else None
            i = _take_value(row, inline, argv, i, element=element, handle=handle)
            continue

        # a cluster of short options
        cluster = element[1:]
        while cluster:
            letter, cluster = cluster[0], cluster[1:]
            row = by_short.get(letter)
            if row is None:
                raise PoptError(element, "unknown option")
            if row.kind is ArgKind.NONE:
                if cluster.startswith("="):
                    raise PoptError(element, "option does not take an argument")
                handle(row, None)
                continue
            # the rest of the cluster is the value ("-B=" gives ""); none: next element
            inline = (cluster[1:] if cluster.startswith("=") else cluster) if cluster else None
            i = _take_value(row, inline, argv, i, element=element, handle=handle)
            break
    return positionals


def _take_value(
    row: PoptOption,
    inline: str | None,
    argv: Sequence[str],
    i: int,
    *,
    element: str,
    handle: Handler,
) -> int:
    """Resolve `row`'s value (inline or the next element), hand it over, return next i."""
    if row.kind is ArgKind.NONE:
        if inline is not None:
            raise PoptError(element, "option does not take an argument")
        handle(row, None)
        return i
    if inline is None:
        if i >= len(argv):
            raise PoptError(element, "missing argument")
        inline = argv[i]
        element = argv[i]
        i += 1
    value: int | str = _parse_c_int(inline, element) if row.kind is ArgKind.INT else inline
    handle(row, value)
    return i
