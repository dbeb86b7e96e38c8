"""Source text and spans: where every piece of a spec came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceFile:
    """A spec's text and the name it is reported under (a path, or `<string>`)."""

    name: str
    text: str
    _lines: list[str] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def line(self, n: int) -> str:
        """The 1-based line `n`, without its newline ('' past the end)."""
        lines = self._lines
        if lines is None:
            # '\n' alone ends a line, as in the parser: str.splitlines() would also split at
            # '\r', '\x0c' or U+2028 and show the wrong line under a diagnostic
            lines = [ln.removesuffix("\r") for ln in self.text.split("\n")]
            object.__setattr__(self, "_lines", lines)
        return lines[n - 1] if 1 <= n <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based lines and columns, end exclusive."""

    source: SourceFile
    line: int
    col: int
    end_line: int
    end_col: int

    def __repr__(self) -> str:
        return f"Span({self.source.name}:{self.line}:{self.col}-{self.end_line}:{self.end_col})"

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"

    def to(self, other: "Span") -> "Span":
        """The span from the start of this one to the end of `other`."""
        return Span(self.source, self.line, self.col, other.end_line, other.end_col)


def span_of_meta(source: SourceFile, meta) -> Span:
    """The span of a Lark tree or token (with `propagate_positions=True`)."""
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)
