"""Random specs drawn from the op registry, and the property every one `check` accepts must hold.

The generator knows no layer by name: it reads each op's declaration (pydantic fields, arity,
outputs) and samples arguments from the field types, so a new op is fuzzed the day it is
declared. Inputs get small random shapes and every dtype the language has. `held(text)` is the
property of issue 15: a spec that validates builds, runs forward and backward in train and eval
mode at the declared shapes and dtypes, and produces exactly the shapes and dtypes the IR states.
Used by tests/test_check_builds.py (a few thousand specs) and bench/bench_check_builds.py
(100,000, offline).
"""

from __future__ import annotations

import random
import types
import typing
from dataclasses import dataclass, field

import annotated_types as at
from pydantic.fields import FieldInfo

import netdsl
from netdsl.ir.types import DTYPES
from netdsl.ops.base import Extra, Inferred
from netdsl.ops.registry import OPS

# Numbers beyond every bound (sizes that fit the bounds but not this machine's memory are
# W311/E413's business, not a shape rule's).
HUGE = ["9 ** 9 ** 9", "2 ** 62", "10 ** 30", "1e999", "1e300 * 1e300", "-(2 ** 63)",
        "1e308 * 10", "(2 ** 31) * (2 ** 31)", "7 ** -1", "2 ** 64"]
SKIP_FAMILIES = ("backbone",)  # torchvision networks: covered by their own differential tests
OPS_USED = sorted(k for k, c in OPS.items() if c.family not in SKIP_FAMILIES)
CHAINED = [k for k in OPS_USED if OPS[k].arity[0] == 1]  # what a chain step can be


def _sample(rng: random.Random, tp, meta=()):
    """A value of type `tp` (a pydantic field annotation) as spec text, or None to leave it out."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return _sample(rng, base, (*meta, *extra))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp)]
        return _sample(rng, rng.choice(options), meta)
    if tp is type(None):
        return "none"
    if origin is typing.Literal:
        v = rng.choice(typing.get_args(tp))
        return _literal(v)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * rng.randint(1, 3)
        return "[" + ", ".join(str(_sample(rng, a)) for a in args) + "]"
    if tp is bool:
        return rng.choice(["true", "false"])
    if tp in (int, float) and rng.random() < 0.01:  # bounds: each must end in a located error
        return rng.choice(HUGE)
    lo, hi = -3, 6
    meta = [m for x in meta for m in (x.metadata if isinstance(x, FieldInfo) else [x])]
    for m in meta:
        if isinstance(m, at.Gt):
            lo = max(lo, m.gt + 1)
        elif isinstance(m, at.Ge):
            lo = max(lo, m.ge)
        elif isinstance(m, at.Le):
            hi = min(hi, m.le)
        elif isinstance(m, at.Lt):
            hi = min(hi, m.lt - 1)
    if tp is int:
        return str(rng.randint(lo, max(lo, hi)))
    if tp is float:
        return repr(round(rng.uniform(max(lo, 0), min(hi, 1.0) if hi >= 0 else 1.0), 3))
    if tp is str:
        return '"a"'
    return None


def _literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def layer_call(rng: random.Random, kind: str) -> str:
    """`Kind(arg=value, ...)`: each required field, and about a third of the others."""
    cls = OPS[kind]
    args = []
    for name, f in cls.model_fields.items():
        if name == cls.varargs and name.endswith("_"):  # sizes, written positionally: Reshape(4, 4)
            sizes = rng.sample([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, -1], rng.randint(1, 3))
            args.extend(map(str, sizes))
            continue
        if name == cls.varargs:  # any other variadic field: its items, positionally (Permute(0, 2, 1))
            if rng.random() < 0.5:  # integers there are dimensions, most often: an order of them
                k = rng.randint(1, 4)
                args.insert(0, ", ".join(map(str, [0, *rng.sample(range(1, k + 1), k)])))
            else:
                args.insert(0, _sample(rng, f.annotation)[1:-1])
            continue
        if name == "op" or any(isinstance(m, Extra) for m in f.metadata):
            continue
        inferred = any(isinstance(m, Inferred) for m in f.metadata)
        required = f.is_required() and not inferred
        if not required and rng.random() > (0.1 if inferred else 0.35):
            continue
        tp = f.annotation
        if f.metadata:
            tp = typing.Annotated[(tp, *f.metadata)]
        v = _sample(rng, tp)
        if v is not None:
            args.append(f"{name}={v}")
    return f"{kind}({', '.join(args)})" if args else kind


def input_decl(rng: random.Random) -> str:
    rank = rng.choice([1, 1, 2, 2, 3, 3, 4, 4])
    shape = ", ".join(str(rng.choice([1, 2, 3, 4, 5, 6, 8])) for _ in range(rank))
    dtype = rng.choices(list(DTYPES), weights=[8 if d == "float32" else 1 for d in DTYPES])[0]
    return f"[{shape}]" + ("" if dtype == "float32" else f" {dtype}")


def spec_text(rng: random.Random, tries: int = 4, refused=None) -> str:
    """One model: one or two inputs, then up to five statements, each a short chain of random
    layers from a value so far, or a merge of two values; multi-output layers are unpacked.
    Each statement is drawn up to `tries` times until `check` accepts the spec so far (so most
    specs come out valid); each refused draw goes to `refused(text, error)`. The outputs are the
    values nothing reads."""
    head = [f"  input x{i}: {input_decl(rng)}" for i in range(rng.choice([1, 1, 1, 2]))]
    values = [f"x{i}" for i in range(len(head))]
    body: list[str] = []
    read: set[str] = set()
    for s in range(rng.randint(1, 5)):
        for _ in range(tries):
            stmt, srcs, outs = _statement(rng, s, values)
            text = _model(head, body + [stmt], values + outs)
            try:
                netdsl.loads(text, "gen.net")
            except netdsl.NetdslError as exc:
                if refused is not None:
                    refused(text, exc)
                continue
            body.append(stmt)
            values += outs
            read |= set(srcs)
            break
    return _model(head, body, [v for v in values if v not in read])


# Constructs that are not a layer in a chain: values without a batch and what reads sizes.
# Each is drawn against a value so far; the shapes are chosen at random, so about half of the
# drafts are refused (and their diagnostics checked), the rest held to the IR like any other.
HELD = ("Parameter", "Buffer")
SHAPED = (
    "  {v} = {src} {op} {held}({shape}{init})",  # x + Parameter(...): broadcast over the batch
    "  {v} = ({held}(1, {shape}{init}).expand({src}.size(0), {minus}), {src}) -> Concat(dim=1)",
    "  {v} = {src} + arange({src}.size({dim})) * {number}",
    "  {v} = scaled_dot_product_attention({src}, {src}, {src}{sdpa})",
    "  {v} = {src} -> Linear({src}.size(-1) * {k})",
    "  {v} = {src} -> TransformerEncoder(TransformerEncoderLayer({k}, dim_feedforward=8, dropout=0.0), 2{norm})",
    "  {v} = ({src}, {src}) -> TransformerDecoder(TransformerDecoderLayer({k}, dim_feedforward=4), 1{causal})",
    "  {v} = ({src}, {src}) -> TransformerDecoderLayer({k}, dim_feedforward=4{causal})",
    "  {v} = {src} -> MultiheadAttention({k}, is_causal=true)",
)


def _shaped(rng: random.Random, s: int, values: list[str]):
    src = rng.choice(values)
    sizes = [rng.choice([1, 1, 2, 3, 4, 5, 6, 8]) for _ in range(rng.randint(1, 3))]
    init = rng.choice(["", "", ", init=ones", ", init=normal, std=0.5", ", init=constant, value=2.5",
                       ", init=uniform, a=-1, b=1", ", init=xavier_uniform", ", trainable=false"])
    line = rng.choice(SHAPED).format(
        v=f"v{s}", src=src, op=rng.choice(["+", "*", "-", "/"]), held=rng.choice(HELD),
        shape=", ".join(map(str, sizes)), init=init, minus=", ".join(["-1"] * len(sizes)),
        dim=rng.choice([1, 2, -1]), number=rng.choice(["1.0", "0.5", "2"]), k=rng.randint(1, 3),
        sdpa=rng.choice(["", ", is_causal=true", ", scale=0.5", ", dropout=0.3"]),
        norm=rng.choice(["", ", norm=LayerNorm", ", is_causal=true"]), causal=rng.choice(["", ", tgt_is_causal=true"]))
    if "Buffer" in line and "trainable" in line:
        line = line.replace(", trainable=false", "")
    return line, [src], [f"v{s}"]


def _statement(rng: random.Random, s: int, values: list[str]):
    if rng.random() < 0.15:
        return _shaped(rng, s, values)
    if rng.random() < 0.2 and len(values) > 1:
        a, b = rng.sample(values, 2)
        call = layer_call(rng, rng.choice(["Add", "Mul", "Sub", "Div", "MatMul", "Concat", "Bilinear"]))
        return f"  v{s} = ({a}, {b}) -> {call}", [a, b], [f"v{s}"]
    src = rng.choice(values)
    chain, outs = [], [f"v{s}"]
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(CHAINED)
        chain.append(layer_call(rng, kind))
        fixed = OPS[kind].outputs  # a tuple, or a property where the arguments say (Chunk(3))
        if isinstance(fixed, tuple) and len(fixed) > 1:
            outs = [f"v{s}_{j}" for j in range(len(fixed))]
            break
    return f"  {', '.join(outs)} = {src} -> {' -> '.join(chain)}", [src], outs


def _model(head: list[str], body: list[str], outputs: list[str]) -> str:
    return "model M {\n" + "\n".join(head + body) + f"\n  output {', '.join(outputs)}\n}}\n"


@dataclass
class Tally:
    tried: int = 0
    valid: int = 0
    refused: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (spec, what went wrong)

    def line(self) -> str:
        return (f"{self.tried} specs tried, {self.valid} valid, {self.refused} refused with a "
                f"diagnostic, {len(self.failures)} failures")


def example(t, torch):
    """A batch for one declared input: random floats, small non-negative integers (ids)."""
    shape = (2, *t.shape)
    if t.dtype in ("float32", "float64", "float16", "bfloat16"):
        return torch.randn(shape, dtype=getattr(torch, t.dtype))
    if t.dtype == "bool":
        return torch.zeros(shape, dtype=torch.bool)
    return torch.zeros(shape, dtype=getattr(torch, t.dtype))


def held(text: str, tally: Tally, check_diagnostics=None) -> None:
    """Check `text`; when it validates, hold the built module to what the IR says."""
    import torch

    tally.tried += 1
    try:
        spec = netdsl.loads(text, "gen.net")
    except netdsl.NetdslError as exc:
        tally.refused += 1
        if check_diagnostics is not None:
            check_diagnostics(exc.diagnostics, text)
        if any(d.code == "E900" for d in exc.diagnostics):
            tally.failures.append((text, "E900 from check"))
        return
    tally.valid += 1
    g = spec.graph()
    try:
        model = spec.build()
        xs = [example(n.types[0], torch) for n in g.inputs]
        want = [g.type_of(o.ref) for o in g.outputs]
        for mode in ("train", "eval"):
            model.train(mode == "train")
            out = model(*xs)
            out = out if isinstance(out, tuple) else (out,)
            got = [(tuple(o.shape[1:]), str(o.dtype).removeprefix("torch.")) for o in out]
            expected = [(tuple(t.shape), t.dtype) for t in want]
            if got != expected:
                tally.failures.append((text, f"{mode}: IR says {expected}, torch gives {got}"))
                return
            if mode == "train":
                loss = sum(o.float().sum() for o in out if o.requires_grad)
                if isinstance(loss, torch.Tensor):
                    loss.backward()
    except Exception as exc:  # noqa: BLE001 - every failure of an accepted spec is the finding
        tally.failures.append((text, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
