"""Deployable artifacts from a model's live module: torch.export programs (`.pt2`), ONNX files
and safetensors weights, with the dynamic dimensions the spec declares, each file proven against
the live module before it is reported written.

Dynamic dimensions. The batch is always dynamic (1 to `MAX_BATCH`); every declared dimension
(`input image: [3, H, W] where H >= 32`) becomes a `torch.export.Dim` with the declared range,
and `H % 16 == 0` a derived `16 * Dim`. The example input traced is a *typical* size (never 1,
which torch would specialise). torch assumes a traced size is not 1 where a layer's output
could be (a ResNet's last feature map at H = 32): export runs with torch's
`backed_size_oblivious`, and the proof below is what shows that the program is right there too.
A dimension that torch still fixes or narrows is an error (E506) and no file is written.

The proof. The file is written beside its destination, read back (its CRCs checked for `.pt2`,
`onnx.checker` and ONNX Runtime for `.onnx`, netdsl's CRC-32s for `.safetensors`), and run at
the smallest, a typical and the largest admissible sizes; its outputs must equal the live
module's within the printed tolerance. Only then is it renamed into place. The module is
exported in eval mode (dropout off, BatchNorm's running statistics).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Diagnostic, NetdslError
from ..ir.dims import Dim
from ..ir.graph import Graph
from ..weightfile import need, read_safetensors, safetensors_bytes

FORMATS = {"pt2": ".pt2", "onnx": ".onnx", "safetensors": ".safetensors"}
MAX_BATCH = 1 << 16
UNBOUNDED = (1 << 31) - 2  # torch.export's largest size for a dimension without a largest
# |ours - theirs| <= ATOL + RTOL * max|ours|, per output; a torch.export program runs the same
# kernels (usually exact), ONNX Runtime its own (float32 sums in another order)
TOLERANCE = {"pt2": (1e-5, 1e-5), "onnx": (1e-4, 1e-4), "safetensors": (0.0, 0.0)}


@dataclass
class Check:
    """One proof run: the sizes, and the largest difference of any output."""

    label: str  # smallest, typical, largest
    sizes: dict[str, int]
    max_diff: float
    scale: float  # the largest |output| there


@dataclass
class ExportResult:
    path: str
    format: str
    model: str
    dynamic: dict[str, str]  # dimension -> its range, as exported
    checks: list[Check] = field(default_factory=list)
    tolerance: tuple[float, float] = (0.0, 0.0)
    opset: int | None = None
    weights: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "model": self.model,
                "dynamic": self.dynamic, "opset": self.opset, "weights": self.weights,
                "tolerance": {"atol": self.tolerance[0], "rtol": self.tolerance[1]},
                "checks": [c.__dict__ for c in self.checks], "notes": self.notes}

    def report(self) -> str:
        at, rt = self.tolerance
        lines = [f"wrote {self.path} ({self.format}"
                 + (f", ONNX opset {self.opset}" if self.opset else "") + f", {self.model})"]
        if self.dynamic:
            lines.append("  dynamic: " + ", ".join(f"{k} {v}" for k, v in self.dynamic.items()))
        tol = "identical" if (at, rt) == (0.0, 0.0) else f"|diff| <= {at:g} + {rt:g} * max|output|"
        lines.append(f"  checked against the live module ({tol}):")
        for c in self.checks:
            sizes = ", ".join(f"{k}={v}" for k, v in c.sizes.items())
            lines.append(f"    {c.label:<8} {sizes:<28} max |diff| {c.max_diff:.2e}"
                         f"  (max |output| {c.scale:.3g})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---- sizes ----------------------------------------------------------------------------------

def _admissible(d: Dim, at_least: int) -> int:
    """The smallest admissible size of `d` from `at_least` on (its largest if none is)."""
    v = max(d.first, -(-at_least // d.step) * d.step)
    return v if d.last is None or v <= d.last else d.last


def check_sizes(graph: Graph) -> list[tuple[str, dict[str, int]]]:
    """(label, {dimension: size}) for the smallest, a typical and the largest admissible sizes;
    `batch` is the batch. The typical one is the traced example: never 1, never a boundary
    where that can be helped. An unbounded dimension is checked up to twice its typical size."""
    dims = [d for d in graph.dims if d.last is None or d.last > d.first]
    typical = {d.name: _admissible(d, max(2 * d.first, 64)) for d in dims}
    smallest = {d.name: d.first for d in dims}
    largest = {d.name: d.last if d.last is not None else _admissible(d, 2 * typical[d.name])
               for d in dims}
    return [("smallest", {"batch": 1, **smallest}), ("typical", {"batch": 2, **typical}),
            ("largest", {"batch": 5, **largest})]


def example_inputs(graph: Graph, sizes: dict[str, int], seed: int = 0) -> tuple:
    """Random inputs of the given sizes: floats from N(0, 1), ids below the Embedding they
    feed, bool masks true on a tail of random length (a key padding mask; never all true)."""
    import torch

    from ..runtime.planner import _vocab

    g = torch.Generator().manual_seed(seed)
    out = []
    for n in graph.inputs:
        t = n.types[0]
        shape = ([sizes["batch"]] if t.has_batch else []) + [_size(s, sizes) for s in t.shape]
        dtype = getattr(torch, t.dtype)
        if dtype == torch.bool and len(shape) >= 2:  # a padding mask: true on a tail, never all
            n = shape[1]
            keep = torch.randint(1, n + 1, (shape[0],), generator=g)
            rest = [1] * (len(shape) - 2)
            x = (torch.arange(n).view(1, n, *rest) >= keep.view(-1, 1, *rest)).expand(shape).clone()
        elif dtype == torch.bool:
            x = torch.rand(shape, generator=g) < 0.5
        elif dtype.is_floating_point:
            x = torch.randn(shape, generator=g).to(dtype)
        else:
            top = _vocab(graph, n.name) or 2
            x = torch.randint(0, top, shape, generator=g, dtype=dtype)
        out.append(x)
    return tuple(out)


def _size(s, sizes: dict[str, int]) -> int:
    if isinstance(s, int):
        return s
    return int(s.at({d: sizes[d.name] // d.step for d in s.dims()}))  # `at` takes size / step


def dynamic_shapes(graph: Graph) -> dict:
    """torch.export's `dynamic_shapes` for the model's inputs, by input name."""
    from torch.export import Dim as TDim

    batch = TDim("batch", min=1, max=MAX_BATCH)
    made: dict[str, object] = {}

    def dim(d: Dim):
        if d.name not in made:
            hi = d.hi if d.hi is not None else UNBOUNDED // d.step
            if d.step == 1:
                made[d.name] = TDim(d.name, min=d.lo, max=hi)
            else:  # H % 16 == 0: H = 16 * _H
                made[d.name] = d.step * TDim(f"_{d.name}", min=d.lo, max=hi)
        return made[d.name]

    shapes = {}
    for n in graph.inputs:
        t = n.types[0]
        spec = {0: batch} if t.has_batch else {}
        offset = 1 if t.has_batch else 0
        for i, s in enumerate(t.shape):
            if isinstance(s, int):
                continue
            ds = list(s.dims())
            if len(ds) != 1 or s != ds[0].size():
                raise NetdslError([Diagnostic(
                    "E506", f"input '{n.name}' has a size written as {s}: torch.export takes a "
                    "declared dimension, or a multiple of one, in an input's shape",
                    n.span, "declare that size as a dimension of its own")])
            if ds[0].last is not None and ds[0].last == ds[0].first:
                continue
            spec[i + offset] = dim(ds[0])
        shapes[n.name] = spec
    return shapes


def _ranges(graph: Graph) -> dict[str, str]:
    out = {"batch": f"1..{MAX_BATCH}"}
    for d in graph.dims:
        if d.last is None or d.last > d.first:
            step = f" step {d.step}" if d.step > 1 else ""
            out[d.name] = f"{d.first}..{d.last if d.last is not None else ''}{step}"
    return out


# ---- export ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet():
    """torch.export and torch.onnx talk on stdout and warn a lot; their failures are ours."""
    import logging

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _oblivious():
    """Trace sizes as not 1 where torch would otherwise specialise a dynamic size to the
    example's (the proof at the smallest size is what shows the program right there)."""
    import torch.fx.experimental._config as fx_config

    with fx_config.patch(backed_size_oblivious=True):
        yield


@contextlib.contextmanager
def _explicit_attention(module):
    """nn.MultiheadAttention cannot be exported with a dynamic batch by torch 2.x: its
    projections reshape a transposed input and call `.contiguous()`, which asks whether the
    batch or the sequence is 1, and torch.export then fixes both (pytorch/pytorch#156681).
    While exporting, each such layer computes the same attention in ops that ask nothing about
    sizes (projections, scaled scores, masks, softmax, output projection); the proof at three
    sizes is what shows the two agree. Layers with options this does not cover (separate key
    and value sizes, bias_k/bias_v, add_zero_attn) keep torch's own forward. Restored after."""
    from torch import nn

    patched = []
    for layer in module.modules():
        if (isinstance(layer, nn.MultiheadAttention) and layer._qkv_same_embed_dim
                and layer.bias_k is None and not layer.add_zero_attn):
            patched.append(layer)
            layer.forward = _attention(layer)
    try:
        yield
    finally:
        for layer in patched:
            del layer.forward  # the class's own again


def _attention(layer):
    import math

    import torch
    import torch.nn.functional as F

    heads, e = layer.num_heads, layer.embed_dim
    d = e // heads

    def contiguous(x):  # a copy, always: `.contiguous()` would ask whether a size is 1
        return x.clone(memory_format=torch.contiguous_format)

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if not layer.batch_first or not batched:  # [L, B, E] -> [B, L, E]
            query, key, value = (contiguous(t.transpose(0, 1)) for t in (query, key, value))
        w, b = layer.in_proj_weight, layer.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(e)
        wq, wk, wv = w.split(e)

        def heads_first(x):  # [B, L, E] -> [B, heads, L, d], contiguous: matmul reshapes
            return contiguous(x.unflatten(-1, (heads, d)).transpose(1, 2))

        q = heads_first(F.linear(query, wq, bq))
        k = heads_first(F.linear(key, wk, bk))
        v = heads_first(F.linear(value, wv, bv))
        scores = (q * (1.0 / math.sqrt(d))) @ contiguous(k.transpose(-2, -1))  # [B, heads, L, S]
        if attn_mask is None and is_causal:
            n, s = scores.shape[-2], scores.shape[-1]
            attn_mask = torch.ones(n, s, dtype=torch.bool, device=q.device).triu(1)
        if attn_mask is not None:
            mask = attn_mask if attn_mask.dim() == 2 else attn_mask.unflatten(0, (-1, heads))
            scores = (scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool
                      else scores + mask)
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, None, :]
            scores = (scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool
                      else scores + pad)
        p = torch.softmax(scores, dim=-1)
        if layer.training and layer.dropout > 0:
            p = F.dropout(p, layer.dropout)
        out = contiguous((p @ v).transpose(1, 2)).flatten(-2)  # [B, L, E]
        out = layer.out_proj(out)
        if not layer.batch_first or not batched:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        weights = None
        if need_weights:
            weights = p.mean(dim=1) if average_attn_weights else p
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    return forward


def _torch_export(module, graph: Graph, args: tuple):
    import torch

    shapes = dynamic_shapes(graph)
    try:
        with _quiet(), _oblivious(), _explicit_attention(module):
            program = torch.export.export(module, args, dynamic_shapes=shapes)
    except Exception as exc:  # noqa: BLE001 -- torch's constraint errors, unsupported ops
        kept = _kept_ranges(exc, graph)
        if kept:
            raise NetdslError([Diagnostic(
                "E506", f"torch.export cannot keep every size the spec admits for "
                f"{graph.name}: its program takes only {', '.join(kept)}; no file was written",
                hint="declare that range on the input (`where ...`) to export it, or export at "
                     "the sizes you deploy")]) from None
        raise NetdslError([Diagnostic("E506", f"torch.export cannot export {graph.name}: "
                                      + _torch_why(exc), hint=_torch_hint(exc))]) from None
    _refuse_specialised(program, graph, shapes)
    return program, shapes


def _torch_why(exc: Exception) -> str:
    text = str(exc)
    lines = [ln.strip()[2:] for ln in text.splitlines()
             if ln.strip().startswith("- Not all values")]
    if lines:
        return "it would fix a dynamic size: " + "; ".join(lines[:3])
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:400]


def _kept_ranges(exc: Exception, graph: Graph) -> list[str]:
    """From torch's constraint error, the range it keeps of each declared dimension it
    narrowed (`H >= 64` where the spec says `H >= 32`): [] when it said something else."""
    import re

    names = {}
    for n in graph.inputs:
        t = n.types[0]
        for i, size in enumerate(t.shape):
            dims = [] if isinstance(size, int) else list(size.dims())
            if len(dims) == 1:
                names[(n.name, i + (1 if t.has_batch else 0))] = dims[0]
    kept = []
    for line in str(exc).splitlines():
        if "satisfy the generated guard" not in line:
            continue
        lows = re.findall(r"(\d+) <= L\['(\w+)'\]\.size\(\)\[(\d+)\]", line)
        highs = re.findall(r"L\['(\w+)'\]\.size\(\)\[(\d+)\] <= (\d+)", line)
        for value, name, index in lows:
            d = names.get((name, int(index)))
            if d is not None and int(value) > d.first:
                kept.append(f"{d.name} >= {value} (the spec declares {d.describe()})")
        for name, index, value in highs:
            d = names.get((name, int(index)))
            if d is not None and d.last is not None and int(value) < d.last:
                kept.append(f"{d.name} <= {value} (the spec declares {d.describe()})")
    return list(dict.fromkeys(kept))


def _torch_hint(exc: Exception) -> str | None:
    if "satisfy the generated guard" in str(exc):
        return ("a layer's torch kernel decides on this size; narrow the dimension's declared "
                "range to the sizes torch keeps, or export with a later torch")
    return None


def _refuse_specialised(program, graph: Graph, shapes: dict) -> None:
    """E506 when an input size declared dynamic is a plain number in the exported program."""
    from torch import SymInt

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user_inputs = program.graph_signature.user_inputs
    for spec_input, name in zip(graph.inputs, user_inputs, strict=True):
        val = placeholders[name].meta.get("val")
        for i in shapes.get(spec_input.name, {}):
            if val is not None and not isinstance(val.shape[i], SymInt):
                raise NetdslError([Diagnostic(
                    "E506", f"torch.export fixed dimension {i} of input '{spec_input.name}' to "
                    f"{val.shape[i]}, which the spec declares dynamic; no file was written")])


def _as_tuple(out) -> tuple:
    if isinstance(out, (tuple, list)):
        return tuple(out)
    if isinstance(out, dict):
        return tuple(out.values())
    return (out,)


def _compare(label, sizes, ours, theirs, tol, fmt) -> Check:
    import torch

    diff = scale = 0.0
    if len(ours) != len(theirs):
        raise NetdslError([Diagnostic("E506", f"the {fmt} file gives {len(theirs)} outputs, the "
                                      f"model {len(ours)}; no file was written")])
    for a, b in zip(ours, theirs, strict=True):
        b = torch.as_tensor(b)
        if tuple(a.shape) != tuple(b.shape):
            raise NetdslError([Diagnostic(
                "E506", f"at {_sizes_text(sizes)} the {fmt} file gives an output of shape "
                f"{list(b.shape)}, the model {list(a.shape)}; no file was written")])
        a64, b64 = a.detach().double(), b.detach().double().to(a.device)
        diff = max(diff, float((a64 - b64).abs().max()) if a.numel() else 0.0)
        scale = max(scale, float(a64.abs().max()) if a.numel() else 0.0)
    atol, rtol = tol
    if diff > atol + rtol * scale:
        raise NetdslError([Diagnostic(
            "E506", f"at {_sizes_text(sizes)} ({label}) the {fmt} file's outputs differ from the "
            f"model's by {diff:.3g} (allowed {atol:g} + {rtol:g} * {scale:.3g}); no file was "
            "written")])
    return Check(label, sizes, diff, scale)


def _sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items())


def _proof_runs(module, graph: Graph, run, fmt: str) -> list[Check]:
    """Run the artifact (`run(args) -> outputs`) and the live module at each size."""
    import torch

    checks = []
    for i, (label, sizes) in enumerate(check_sizes(graph)):
        args = example_inputs(graph, sizes, seed=1 + i)
        # the live module runs with autograd on: torch's inference fast path for transformer
        # layers (nested tensors) zeroes padded positions, which training and export compute
        with torch.enable_grad():
            try:
                with _quiet():
                    ours = tuple(t.detach() for t in _as_tuple(module(*args)))
            except Exception as exc:  # noqa: BLE001 -- torch refuses the model itself here
                raise NetdslError([Diagnostic(
                    "E506", f"the model itself fails at {_sizes_text(sizes)} ({label}), a size "
                    f"the spec admits: {str(exc).strip().splitlines()[0][:300]}")]) from None
        with torch.no_grad():
            try:
                with _quiet():
                    theirs = _as_tuple(run(args))
            except NetdslError:
                raise
            except Exception as exc:  # noqa: BLE001 -- the artifact refuses this size
                raise NetdslError([Diagnostic(
                    "E506", f"the exported {fmt} file fails at {_sizes_text(sizes)} ({label}), "
                    f"a size the spec admits: {str(exc).strip().splitlines()[0][:300]}; no file "
                    "was written")]) from None
        checks.append(_compare(label, sizes, ours, theirs, TOLERANCE[fmt], fmt))
    return checks


def _known(fmt: str) -> None:
    if fmt not in FORMATS:
        from ..diagnostics import did_you_mean

        raise NetdslError([Diagnostic("E506", f"unknown export format '{fmt}' (netdsl writes "
                                      f"{', '.join(FORMATS)})", hint=did_you_mean(fmt, FORMATS))])


def export_module(module, graph: Graph, fmt: str, path: str | os.PathLike, *,
                  weights: str | None = None, metadata: dict[str, str] | None = None,
                  opset: int | None = None) -> ExportResult:
    """Export `module` (built from `graph`, in eval mode) as `fmt` to `path`, proven first."""
    from ..fileio import WriteError, replacing

    _known(fmt)
    path = Path(path)
    module = module.eval()
    dynamic = {} if fmt == "safetensors" else _ranges(graph)
    result = ExportResult(str(path), fmt, graph.name, dynamic, tolerance=TOLERANCE[fmt],
                          weights=weights)
    try:
        with replacing(path) as tmp:  # proven there, then moved into place
            {"pt2": _pt2, "onnx": _onnx, "safetensors": _safetensors}[fmt](
                module, graph, tmp, result, metadata or {}, opset)
    except WriteError as exc:
        raise NetdslError([Diagnostic("E501", f"cannot write {path}: {exc}")]) from None
    return result


def _pt2(module, graph, tmp: Path, result: ExportResult, metadata, opset) -> None:
    import torch

    from ..runtime.loop import DamagedArchive, verify_archive

    args = example_inputs(graph, check_sizes(graph)[1][1])
    program, _ = _torch_export(module, graph, args)
    buffer = io.BytesIO()  # a buffer: torch insists on file names ending in .pt2
    with _quiet():
        torch.export.save(program, buffer, extra_files={"netdsl.json": json.dumps(metadata)})
    tmp.write_bytes(buffer.getvalue())
    try:  # read back as a user would: CRCs first, then torch's loader
        verify_archive(tmp)
    except DamagedArchive as exc:
        raise NetdslError([Diagnostic("E506", f"the written file fails its check: {exc}")]) \
            from None
    with _quiet():
        loaded = torch.export.load(io.BytesIO(tmp.read_bytes())).module()
    result.checks = _proof_runs(module, graph, lambda a: loaded(*a), "pt2")


def _onnx(module, graph, tmp: Path, result: ExportResult, metadata, opset) -> None:
    import torch

    onnx = need("onnx", "ONNX export")
    need("onnxscript", "ONNX export")
    ort = need("onnxruntime", "checking an ONNX export")
    args = example_inputs(graph, check_sizes(graph)[1][1])
    _torch_export(module, graph, args)  # the same dynamic-size checks, in torch's words
    names = [n.name for n in graph.inputs]
    outputs = [o.name for o in graph.outputs]
    try:  # traced again from the module: given the program, torch names the axes s0, s1
        with _quiet(), _oblivious(), _explicit_attention(module):
            program = torch.onnx.export(module, args, dynamo=True,
                                        dynamic_shapes=dynamic_shapes(graph), input_names=names,
                                        output_names=outputs, opset_version=opset, verbose=False)
    except Exception as exc:  # noqa: BLE001 -- an op without an ONNX translation, ...
        raise NetdslError([Diagnostic("E506", f"ONNX export of {graph.name} failed: "
                                      + _torch_why(exc))]) from None
    proto = program.model_proto
    for key, value in {"netdsl.model": graph.name, **metadata}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise NetdslError([Diagnostic("E506", f"the ONNX file fails onnx.checker: "
                                      f"{str(exc).splitlines()[0]}")]) from None
    result.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

    def run(a):
        feed = {name: x.cpu().numpy() for name, x in zip(names, a, strict=True)}
        return [torch.from_numpy(y) for y in session.run(outputs, feed)]

    result.checks = _proof_runs(module, graph, run, "onnx")


def _safetensors(module, graph, tmp: Path, result: ExportResult, metadata, opset) -> None:
    state = module.state_dict()
    data = safetensors_bytes(state, {"netdsl.model": graph.name, **metadata})
    tmp.write_bytes(data)
    loaded, _ = read_safetensors(tmp)
    if list(loaded) != list(state):
        raise NetdslError([Diagnostic("E506", "the safetensors file does not give back the "
                                      "model's state_dict keys; no file was written")])
    import copy

    import torch

    twin = copy.deepcopy(module)
    twin.load_state_dict(loaded)

    def run(a):  # as the live module runs in the proof (autograd on: see _proof_runs)
        with torch.enable_grad():
            return tuple(t.detach() for t in _as_tuple(twin(*a)))

    result.checks = _proof_runs(module, graph, run, "safetensors")
    tensors = sum(1 for _ in state)
    result.notes.append(f"{tensors} tensors, {sum(t.numel() for t in state.values()):,} numbers "
                        "(buffers included); the spec's parameter names")


def export_spec(spec, fmt: str, path: str | os.PathLike | None = None, *,
                model: str | None = None, weights: str | os.PathLike | None = None,
                opset: int | None = None, seed: int = 0) -> ExportResult:
    """Export a model of a spec (a `Spec` or a `.net` path) as `fmt` ("pt2", "onnx",
    "safetensors") to `path` (default: MODEL.pt2 / .onnx / .safetensors here), with `weights`
    (a run's weights.pt, a checkpoint, or a safetensors file) or, without them, the spec's
    initialisation under `seed`. Raises NetdslError."""
    import torch

    from ..runtime.runner import _fits
    from ..spec import Spec, load
    from ..weightfile import load_state

    s = spec if isinstance(spec, Spec) else load(spec)
    graph = s.graph(model)
    _known(fmt)  # before the module is built
    path = Path(path) if path is not None else Path(graph.name + FORMATS[fmt])
    torch.manual_seed(seed)
    module = s.build(graph.name)
    notes = []
    if weights is not None:
        state = load_state(weights)
        _fits(module.state_dict(), state, weights, graph.name)
        module.load_state_dict(state)
    else:
        notes.append(f"no --weights: the file holds the spec's initialisation (seed {seed}), "
                     "not trained weights")
    metadata = {"netdsl.spec": Path(s.filename).name}
    result = export_module(module, graph, fmt, path, weights=None if weights is None else
                           str(weights), metadata=metadata, opset=opset)
    result.notes = notes + result.notes
    return result
