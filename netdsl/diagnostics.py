"""Diagnostics: `FILE:LINE:COL: error[CODE]: message`, the source line, a caret, a hint."""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Iterable

from .source import Span

# Stable codes. Tests hold a golden case for every one of them (tests/diagnostics/).
CODES = {
    # syntax
    "E001": "syntax error",
    "E002": "unexpected character",
    "E003": "unexpected end of file",
    # layers and arguments
    "E101": "unknown layer",
    "E102": "unknown argument",
    "E103": "missing argument",
    "E104": "invalid argument value",
    "E105": "too many positional arguments",
    "E106": "argument given twice",
    "E107": "not allowed here",
    "E108": "custom layer not allowed",
    "E109": "custom layer cannot be loaded",
    # names and graph structure
    "E201": "undefined name",
    "E202": "duplicate name",
    "E203": "cycle",
    "E204": "unused input",
    "E205": "wrong number of inputs",
    "E206": "invalid statement",
    "E207": "recursive block",
    "E208": "missing output",
    "E209": "invalid expression",
    "W210": "unused value",
    # shapes and types
    "E301": "shape mismatch",
    "E302": "inferred argument disagrees",
    "E303": "dtype mismatch",
    "E304": "invalid input declaration",
    "E305": "too large",
    "E306": "value without a batch",
    "E307": "needs a static size",
    "E308": "annotation does not hold",
    "W311": "model may not fit in memory",
    # training plans (runtime/plan.py)
    "E401": "invalid training plan",
    "E402": "unknown setting",
    "E403": "loss does not fit its output",
    "E404": "device not available",
    "E405": "unknown name in a training plan",
    "E406": "data not available",
    "E407": "data does not fit the model",
    "E408": "training diverged",
    "E409": "unusable checkpoint or weights",
    "E410": "no space left to write",
    "E411": "invalid device",
    "E412": "label outside the model's classes",
    "E413": "not enough memory",
    "E414": "damaged data file",
    # the command line
    "E501": "no such file",
    "E502": "no such model",
    "E503": "invalid --set",
    "E504": "unknown block to expand",
    "E505": "cannot render",
    "E506": "cannot export",
    "E507": "optional package not installed",
    "E508": "cannot import",
    # internal
    "E900": "internal error",
}


@dataclass
class Diagnostic:
    """One finding about a spec, anchored at a span."""

    code: str
    message: str
    span: Span | None = None
    hint: str | None = None
    notes: list[tuple[str, Span | None]] = field(default_factory=list)
    # places the message names in words (`from Flatten (line 6) <- MaxPool2d (line 5)`): the
    # terminal shows them in the message; editors get them as related locations
    related: list[tuple[str, Span]] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return "warning" if self.code.startswith("W") else "error"

    def format(self, color: bool = False) -> str:
        """The diagnostic as text: header, source line, caret, hint and notes."""
        bold, red, yellow, cyan, blue, reset = (
            ("\033[1m", "\033[31m", "\033[33m", "\033[36m", "\033[34m", "\033[0m")
            if color
            else ("",) * 6
        )
        sev_color = yellow if self.severity == "warning" else red
        where = f"{self.span.where}: " if self.span else ""
        out = [f"{bold}{where}{sev_color}{self.severity}[{self.code}]{reset}{bold}: {self.message}{reset}"]
        if self.span is not None:
            out.extend(_excerpt(self.span, sev_color, blue, reset))
        if self.hint:
            out.append(f"  {cyan}= hint:{reset} {self.hint}")
        for text, span in self.notes:
            where = f"{span.where}: " if span else ""
            out.append(f"  {cyan}= note:{reset} {where}{text}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        d = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.span:
            d.update(file=self.span.source.name, line=self.span.line, col=self.span.col)
        if self.hint:
            d["hint"] = self.hint
        return d


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SGR = re.compile(r"(\x1b\[[0-9;]*m)")  # colour codes: netdsl's own, when it writes colour
PLACEHOLDER = "\N{REPLACEMENT CHARACTER}"


def printable(text: str, keep: str = "\n\r\t", colours: bool = False) -> str:
    """`text` as it may reach a terminal: every character Python does not call printable
    (controls, bidirectional overrides, ...) but those in `keep` becomes a visible placeholder,
    so that a file name, an option value or a string from a spec cannot move the cursor, set
    the title or write the clipboard. With `colours`, SGR colour codes pass (netdsl's own
    diagnostics use them)."""
    def one(part: str) -> str:
        if part.isascii():
            return _ASCII_CONTROL.sub(lambda m: m.group() if m.group() in keep else PLACEHOLDER, part)
        return "".join(c if c.isprintable() or c in keep else PLACEHOLDER for c in part)

    if not colours:
        return one(text)
    return "".join(p if i % 2 else one(p) for i, p in enumerate(_SGR.split(text)))


def _excerpt(span: Span, color: str, gutter_color: str, reset: str) -> list[str]:
    text = span.source.line(span.line)
    end = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, end - span.col)
    gutter = f"{span.line} | "
    pad = " " * (len(gutter) - 2) + "| "
    # one column per character, as the caret counts them: tabs become a space, and control
    # characters a visible placeholder (they would move the terminal's cursor)
    expanded = printable(text.replace("\t", " "), keep="")
    return [
        f"{gutter_color}{gutter}{reset}{expanded}",
        f"{gutter_color}{pad}{reset}{' ' * (span.col - 1)}{color}{'^' * width}{reset}",
    ]


class NetdslError(Exception):
    """Raised for spec mistakes; carries every diagnostic of the failing pass."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__(self.format())

    def format(self, color: bool = False) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        body = "\n".join(d.format(color) for d in self.diagnostics)
        n = len(errors)
        return f"{body}\n{n} error{'s' if n != 1 else ''}" if n else body

    def __str__(self) -> str:
        return self.format()


class Reporter:
    """Collects the diagnostics of one pass; `check()` raises them together."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._seen: set = set()
        self.error_count = 0  # errors reported, repeats included: "did this step fail?"

    def error(self, code: str, message: str, span: Span | None = None, hint: str | None = None,
              notes: list[tuple[str, Span | None]] | None = None) -> Diagnostic:
        assert code in CODES, code
        d = Diagnostic(code, message, span, hint, notes or [])
        if d.severity == "error":
            self.error_count += 1
        key = (code, message, span and (span.source.name, span.line, span.col))
        if key not in self._seen:  # a block used many times reports its own mistakes once
            self._seen.add(key)
            self.diagnostics.append(d)
        return d

    warn = error  # the code's first letter says which

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def check(self) -> None:
        if self.has_errors:
            raise NetdslError(sorted(self.diagnostics, key=_order))

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def _order(d: Diagnostic):
    s = d.span
    return (s.source.name, s.line, s.col) if s else ("", 0, 0)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, if one is close enough: a different case, or at most
    one edit (insert, delete, replace, swap) per three characters.

    >>> did_you_mean("Lineer", ["Linear", "Conv2d"])
    "did you mean 'Linear'?"
    >>> did_you_mean("Frobnicate", ["Concat", "Linear"]) is None
    True
    """
    cands = [c for c in dict.fromkeys(candidates) if c != name]
    lower = {c.lower(): c for c in cands}
    if name.lower() in lower:
        return f"did you mean '{lower[name.lower()]}'?"
    limit = max(1, len(name) // 3)
    scored = []
    for c in cands:
        if abs(len(c) - len(name)) > limit:
            continue
        if len(name) < 3 and not (c.lower().startswith(name.lower()) or name.lower().startswith(c.lower())):
            continue  # one letter in two replaced is not a misspelling
        d = _edit_distance(name.lower(), c.lower())
        if d <= limit:
            scored.append((d, -difflib.SequenceMatcher(None, name, c).ratio(), c))
    return f"did you mean '{min(scored)[2]}'?" if scored else None


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def use_color(stream=sys.stderr) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ
