"""Symbolic sizes: integer expressions over declared dimensions (`H`, `T`), in a canonical
form that proves two sizes equal for every admissible value at once.

A dimension is declared with a step and bounds (`H % 32 == 0, H >= 32`). Internally it is
`step * v` for an integer `v` in a range, so every size a network computes from it is a
polynomial with integer coefficients in those `v`s and in floor terms `floor(P / s)`. The
floor of such a polynomial is normalised as it is built: the part of each coefficient that
`s` divides comes out of the floor (`(8v + 2) // 4` is `2v`), common factors cancel, and a
floor of a floor is one floor. What is left inside a floor really depends on the remainder:

    >>> H = Dim("H", step=8).size()
    >>> str((H // 2 + 1) * 2), (H // 4) * 4 == H, str((H // 16) * 2)
    ('H + 2', True, '2*(H//16)')

Two sizes are equal for all admissible values when their canonical forms are the same
(`==`). The other comparisons answer "can this hold for some admissible size?": interval
bounds decide most, a search over small and extreme sizes finds a witness for the rest, and
an undecided question counts as "yes", so a shape rule's `if out <= 0: raise` refuses what
it cannot rule out. A shape rule that needs a number (`range(size)`, `int(size)`) raises
`SymbolicError` (a TypeError), which the shape pass reports as a size that must be static.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

INF = float("inf")


class SymbolicError(TypeError):
    """A computation that needs a number was given a symbolic size."""


@dataclass(frozen=True)
class Dim:
    """A declared dimension: `name` takes the values `step * v` for `lo <= v <= hi`."""

    name: str
    step: int = 1
    lo: int = 1  # in units of step
    hi: int | None = None  # in units of step; None: unbounded

    def size(self) -> Sym:
        return Sym({(self,): self.step})

    @property
    def first(self) -> int:
        """The smallest admissible size."""
        return self.lo * self.step

    @property
    def last(self) -> int | None:
        return None if self.hi is None else self.hi * self.step

    def admits(self, value: int) -> bool:
        return value % self.step == 0 and value >= self.first and (self.hi is None or value <= self.last)

    def check(self, value: int) -> None:
        """ValueError unless `value` is an admissible size, saying why."""
        if not self.admits(value):
            why = f"{self.name} % {self.step} == 0" if value % self.step else \
                f"{self.name} >= {self.first}" if value < self.first else f"{self.name} <= {self.last}"
            raise ValueError(f"{self.name} = {value} is not admissible: it needs {why} "
                             f"(declared: {self.describe()})")

    def constraints(self) -> list[str]:
        """The declaration in the spec's words: `H % 32 == 0`, `H >= 32`, `H <= 1024`."""
        out = [f"{self.name} % {self.step} == 0"] if self.step > 1 else []
        if self.first > self.step:
            out.append(f"{self.name} >= {self.first}")
        if self.hi is not None:
            out.append(f"{self.name} <= {self.last}")
        return out

    def describe(self) -> str:
        return ", ".join(self.constraints()) or f"{self.name} >= 1"

    def tightened(self, step: int | None = None, first: int | None = None,
                  last: int | None = None) -> Dim | None:
        """This dimension with a larger step, a larger smallest size or a smaller largest one;
        None if no size is left."""
        step = math.lcm(self.step, step or self.step)
        first = max(first or self.first, step)
        lo = -(-first // step)
        if last is not None and self.last is not None:
            last = min(last, self.last)
        last = self.last if last is None else last
        hi = None if last is None else last // step
        if hi is not None and hi < lo:
            return None
        return Dim(self.name, step, lo, hi)


@dataclass(frozen=True)
class Floor:
    """The atom `floor(num / den)`: `num` a Sym with integer coefficients, `den` >= 2."""

    num: Sym
    den: int

    @property
    def key(self) -> str:
        return f"~({self.num.key})//{self.den}"


def _atom_key(a) -> str:
    return f"{a.name}#{a.step}#{a.lo}#{a.hi}" if isinstance(a, Dim) else a.key


def _clean(c):
    if isinstance(c, Fraction) and c.denominator == 1:
        return c.numerator
    return c


def _make(terms: dict) -> int | Fraction | Sym:
    terms = {m: _clean(c) for m, c in terms.items() if c != 0}
    if not terms:
        return 0
    if len(terms) == 1 and () in terms:
        return terms[()]
    return Sym(terms)


def _terms(x) -> dict | None:
    if isinstance(x, Sym):
        return x.terms
    if isinstance(x, bool):
        return {(): int(x)}
    if isinstance(x, int | Fraction):
        return {(): x} if x else {}
    if isinstance(x, float):  # the simplest fraction within a float's rounding: 1/3 for
        if not math.isfinite(x):  # 0.3333333333333333, as torch's double product rounds to
            return None
        f = Fraction(x).limit_denominator(1 << 20)
        return {(): _clean(f)} if f else {}
    return None


def _add(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for m, c in b.items():
        out[m] = out.get(m, 0) + sign * c
    return out


def _mul(a: dict, b: dict) -> dict:
    out: dict = {}
    for m1, c1 in a.items():
        for m2, c2 in b.items():
            m = tuple(sorted(m1 + m2, key=_atom_key)) if m1 and m2 else (m1 or m2)
            out[m] = out.get(m, 0) + c1 * c2
    return out


def _floor_div(terms: dict, d) -> int | Fraction | Sym:
    """floor(P / d) for a polynomial P and a non-zero number d, in canonical form."""
    q = {m: Fraction(c) / Fraction(d) for m, c in terms.items()}
    den = math.lcm(*(c.denominator for c in q.values()))
    return _floor_int({m: int(c * den) for m, c in q.items()}, den)


def _floor_int(p: dict, s: int) -> int | Fraction | Sym:
    """floor(P / s) for P with integer coefficients and s >= 1."""
    if s == 1:
        return _make(p)
    out, rest = {}, {}
    for m, c in p.items():
        q, r = divmod(c, s)
        if q:
            out[m] = q
        if r:
            rest[m] = r
    r0 = rest.pop((), 0)
    if not rest:  # r0 < s: the floor of a constant in [0, s) is 0
        return _make(out)
    g = math.gcd(s, *rest.values())
    if g > 1:  # floor((g*A + r0) / (g*b)) == floor((A + r0 // g) / b)
        rest = {m: c // g for m, c in rest.items()}
        r0, s = r0 // g, s // g
        if s == 1:
            return _make(_add(_add(out, rest), {(): r0}))
    nested = [m for m, c in rest.items() if c == 1 and len(m) == 1 and isinstance(m[0], Floor)]
    if nested:  # floor((floor(P/a) + R) / s) == floor((P + a*R) / (a*s)) for integer R
        f = nested[0][0]
        others = {m: c for m, c in rest.items() if m != nested[0]}
        others[()] = r0
        inner = _add(f.num.terms, {m: c * f.den for m, c in others.items()})
        return _add_num(_make(out), _floor_int(inner, f.den * s))
    atom = Floor(Sym(_add(rest, {(): r0}) if r0 else rest), s)
    return _make(_add(out, {(atom,): 1}))


def _add_num(a, b):
    return _make(_add(_terms(a), _terms(b)))


class Sym:
    """A symbolic size; see the module's docstring. Immutable; hashable by canonical form."""

    __slots__ = ("_key", "terms")

    def __init__(self, terms: dict):
        self.terms = terms
        self._key = None

    # ---- arithmetic ---------------------------------------------------------------------
    def __add__(self, other):
        t = _terms(other)
        return NotImplemented if t is None else _make(_add(self.terms, t))

    __radd__ = __add__

    def __sub__(self, other):
        t = _terms(other)
        return NotImplemented if t is None else _make(_add(self.terms, t, -1))

    def __rsub__(self, other):
        t = _terms(other)
        return NotImplemented if t is None else _make(_add(t, self.terms, -1))

    def __neg__(self):
        return _make({m: -c for m, c in self.terms.items()})

    def __pos__(self):
        return self

    def __mul__(self, other):
        t = _terms(other)
        return NotImplemented if t is None else _make(_mul(self.terms, t))

    __rmul__ = __mul__

    def __pow__(self, k):
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise SymbolicError(f"cannot raise the size {self} to the power {k}")
        out: Any = 1
        for _ in range(k):
            out = out * self
        return out

    def _divisor(self, other) -> bool:
        """Whether `other` is a number to divide by (False: not a number at all)."""
        if isinstance(other, Sym):
            raise SymbolicError(f"cannot divide {self} by the size {other}")
        t = _terms(other)
        if t is not None and not t:
            raise ZeroDivisionError("division by zero")
        return t is not None

    def __truediv__(self, other):
        if not self._divisor(other):
            return NotImplemented
        return _make({m: Fraction(c) / Fraction(other) for m, c in self.terms.items()})

    def __rtruediv__(self, other):
        raise SymbolicError(f"cannot divide by the size {self}")

    def __floordiv__(self, other):
        if not self._divisor(other):
            return NotImplemented
        return _floor_div(self.terms, other)

    def __rfloordiv__(self, other):
        raise SymbolicError(f"cannot divide by the size {self}")

    def __mod__(self, other):
        return self - (self // other) * other

    def __rmod__(self, other):
        raise SymbolicError(f"cannot take a remainder by the size {self}")

    def __floor__(self):
        return _floor_div(self.terms, 1)

    def __ceil__(self):  # ceil(Q / D) == floor((Q + D - 1) / D) for integer Q
        den = math.lcm(*(Fraction(c).denominator for c in self.terms.values()))
        q = {m: int(Fraction(c) * den) for m, c in self.terms.items()}
        return _floor_int(_add(q, {(): den - 1}), den)

    def __abs__(self):
        lo, _ = self.bounds()
        if lo >= 0:
            return self
        raise SymbolicError(f"the sign of {self} is not known")

    # ---- what needs a number ------------------------------------------------------------
    def __bool__(self):
        raise SymbolicError(f"the size {self} is not one number")

    def __int__(self):
        raise SymbolicError(f"the size {self} is not one number")

    __index__ = __int__
    __float__ = __int__

    # ---- comparisons --------------------------------------------------------------------
    def __eq__(self, other):
        t = _terms(other)
        if t is None:
            return NotImplemented
        if self.terms == t:
            return True
        if not isinstance(other, Sym):
            return False
        d = _make(_add(self.terms, t, -1))  # equal in another form: (W + 1)//2 * 2 - 1 ...
        return d == 0 if not isinstance(d, Sym) else _exact(d, "zero") is True

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):  # sizes equal in different forms (W//2 + (W + 1)//2 - W + H and H)
        return 0x5E1F    # must hash alike; sets and dict keys of sizes are small

    def __lt__(self, other):  # can self < other hold?
        return _can(other - self, strict=True)

    def __le__(self, other):
        return _can(other - self, strict=False)

    def __gt__(self, other):
        return _can(self - other, strict=True)

    def __ge__(self, other):
        return _can(self - other, strict=False)

    # ---- reading it ---------------------------------------------------------------------
    @property
    def key(self) -> str:
        if self._key is None:
            self._key = " + ".join(f"{c}*{'*'.join(map(_atom_key, m))}"
                                   for m, c in sorted(self.terms.items(), key=lambda mc: _mono_key(mc[0])))
        return self._key

    def dims(self) -> set[Dim]:
        out: set[Dim] = set()
        for m in self.terms:
            for a in m:
                if isinstance(a, Dim):
                    out.add(a)
                else:
                    out |= a.num.dims()
        return out

    def at(self, values: dict[Dim, int]):
        """The value when each dimension has internal value `values[dim]` (the size / step)."""
        total: Any = 0
        for m, c in self.terms.items():
            v: Any = c
            for a in m:
                v *= values[a] if isinstance(a, Dim) else _floor_value(a, values)
            total += v
        return _clean(Fraction(total)) if isinstance(total, Fraction) else total

    def bounds(self) -> tuple:
        """(lowest, highest) over all admissible sizes, by interval arithmetic (may be loose)."""
        lo = hi = 0
        for m, c in self.terms.items():
            a, b = c, c
            for atom in m:
                x, y = _atom_bounds(atom)
                a, b = _imul((a, b), (x, y))
            lo, hi = lo + a, hi + b
        return lo, hi

    def __str__(self) -> str:
        return _show(_declared(self.terms))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        try:
            return format(str(self), spec)
        except ValueError:  # a number's format (`,`, `.3g`): the formula as it is
            return str(self)


def _mono_key(m) -> tuple:
    return (-len(m), [_atom_key(a) for a in m])


def _floor_value(f: Floor, values) -> int:
    return math.floor(Fraction(f.num.at(values)) / f.den)


def _atom_bounds(a) -> tuple:
    if isinstance(a, Dim):
        return a.lo, (INF if a.hi is None else a.hi)
    lo, hi = a.num.bounds()
    return (math.floor(Fraction(lo) / a.den) if lo != -INF else -INF,
            math.floor(Fraction(hi) / a.den) if hi != INF else INF)


def _imul(x: tuple, y: tuple) -> tuple:
    def m(a, b):
        if a == 0 or b == 0:
            return 0
        return a * b
    c = [m(a, b) for a in x for b in y]
    return min(c), max(c)


def _can(d, strict: bool) -> bool:
    """Can d > 0 (strict) or d >= 0 hold for some admissible size?"""
    if not isinstance(d, Sym):
        return d > 0 if strict else d >= 0
    lo, hi = d.bounds()
    if (hi <= 0) if strict else (hi < 0):
        return False
    if (lo > 0) if strict else (lo >= 0):
        return True
    exact = _exact(d, "positive" if strict else "nonnegative")
    if exact is not None:
        return exact
    for point in samples(d.dims()):
        v = d.at(point)
        if (v > 0) if strict else (v >= 0):
            return True
    return True  # not ruled out: a shape rule refuses what it cannot rule out


def _period(x: Sym, d: Dim) -> int | None:
    """L such that x(v + L) - x(v) is one constant for every v, where x is made of d alone by
    sums, multiples and floors (so x is linear over each residue class of v mod L); else None."""
    period = 1
    for m in x.terms:
        if len(m) > 1:
            return None
        if not m:
            continue
        a = m[0]
        if isinstance(a, Dim):
            if a != d:
                return None
            continue
        inner = _period(a.num, d)
        if inner is None:
            return None
        period = math.lcm(period, inner * a.den)
    return period


MAX_PERIOD = 1 << 14


def _exact(x, question: str) -> bool | None:
    """Exactly, for x over one dimension made of sums, multiples and floors: whether x can be
    positive (or non-negative) for an admissible size, or whether it is zero for all. Over each
    residue of v mod the period, x grows by one constant per period, so one period's values and
    that constant decide it. None where x has another form."""
    dims = x.dims()
    if len(dims) != 1:
        return None
    (d,) = dims
    period = _period(x, d)
    if period is None or period > MAX_PERIOD:
        return None
    stop = d.lo + period if d.hi is None else min(d.lo + period, d.hi + 1)
    base = [x.at({d: v}) for v in range(d.lo, stop)]
    step = x.at({d: d.lo + period}) - base[0] if d.hi is None or d.lo + period <= d.hi else 0
    if question == "zero":
        return step == 0 and all(v == 0 for v in base)
    ok = (lambda v: v > 0) if question == "positive" else (lambda v: v >= 0)
    if any(ok(v) for v in base):
        return True
    if step <= 0:  # each residue's values only fall from there
        return False
    if d.hi is None:
        return True  # and rise without end
    return any(ok(v + step * ((d.hi - (d.lo + r)) // period)) for r, v in enumerate(base))


def samples(dims: Iterable[Dim], limit: int = 4096) -> Iterator[dict[Dim, int]]:
    """Admissible points (internal values), the smallest first: each dimension at its first
    few values, some larger ones and its last; ordered by their sum."""
    dims = sorted(dims, key=lambda d: d.name)
    each = max(2, int(200_000 ** (1 / max(1, len(dims)))))  # values per dimension: the product fits
    axes = []
    for d in dims:
        vals = {d.lo + k for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255)}
        vals |= {2**k + e for k in range(8, 21) for e in (-1, 0, 1) if 2**k + e >= d.lo}  # past the
        # sizes layers are usually made for (a position table of 1024 rows)
        if d.hi is not None:
            vals = {v for v in vals if v <= d.hi} | {d.hi, max(d.lo, d.hi - 1)}
        axes.append(sorted(vals)[:each])
    points = list(itertools.product(*axes))
    points.sort(key=lambda p: (sum(p), p))
    for p in points[:limit]:
        yield dict(zip(dims, p))


def substitute(x, mapping: dict[Dim, Any]):
    """x with each dimension `d` in `mapping` replaced by the size `mapping[d]` (internal value)."""
    if not isinstance(x, Sym):
        return x
    total: Any = 0
    for m, c in x.terms.items():
        v: Any = c
        for a in m:
            if isinstance(a, Dim):
                v = v * (mapping[a] if a in mapping else Sym({(a,): 1}))
            else:
                v = v * (substitute(a.num, mapping) // a.den)
        total = total + v
    return _clean(total) if isinstance(total, Fraction) else total


def rebased(old: Dim, new: Dim):
    """The internal value of `old` written with `new`'s (a tightened copy of it)."""
    return Sym({(new,): 1}) * Fraction(new.step, old.step)


def is_symbolic(x) -> bool:
    return isinstance(x, Sym) or (isinstance(x, tuple | list) and any(is_symbolic(v) for v in x))


def dims_of(x) -> list[Dim]:
    """The dimensions a size, or a tuple of sizes, varies with, by name."""
    found = {d for v in (x if isinstance(x, tuple | list) else (x,)) if isinstance(v, Sym) for d in v.dims()}
    return sorted(found, key=lambda d: d.name)


def lowest(x):
    """The smallest value x takes (x itself for a number)."""
    return x.bounds()[0] if isinstance(x, Sym) else x


def value_at(x, sizes: dict[str, int]):
    """x at declared sizes by name (`{"H": 224}`)."""
    if not isinstance(x, Sym):
        return x
    for d in x.dims():
        d.check(sizes[d.name])
    return x.at({d: sizes[d.name] // d.step for d in x.dims()})


# ---- display --------------------------------------------------------------------------------
def _declared(terms: dict) -> dict:
    """The terms with each dimension standing for its declared size (H, not H / step)."""
    out = {}
    for m, c in terms.items():
        steps = math.prod(a.step for a in m if isinstance(a, Dim))
        out[m] = Fraction(c) / steps
    return out


def _show(terms: dict) -> str:
    parts = []
    for m, c in sorted(terms.items(), key=lambda mc: _mono_key(mc[0])):
        c = Fraction(c)
        factors = [a.name if isinstance(a, Dim) else _show_floor(a) for a in m]
        lone = len(factors) == 1 and c.numerator in (1, -1)
        factors = [f if lone or isinstance(a, Dim) else f"({f})" for a, f in zip(m, factors)]
        n, d = abs(c.numerator), c.denominator
        if not factors:
            body = str(n) if d == 1 else f"{n}/{d}"
        else:
            body = ("" if n == 1 else f"{n}*") + "*".join(factors) + ("" if d == 1 else f"/{d}")
        parts.append(("-" if c < 0 else "+", body))
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, body in parts[1:]:
        text += f" {sign} {body}"
    return text


def _show_floor(f: Floor) -> str:
    q = {m: c / f.den for m, c in _declared(f.num.terms).items()}
    den = math.lcm(*(c.denominator for c in q.values()))
    num = {m: c * den for m, c in q.items()}
    inner = _show(num)
    simple = len(num) == 1 and next(iter(num.values())) == 1
    return f"{inner}//{den}" if simple else f"({inner})//{den}"
