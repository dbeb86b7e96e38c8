"""Does a plan fit its model and its data? Input shapes and dtypes, each loss against the
output it trains, metric names. Run on what the spec says (`netdsl check`) and again on the
loaded data (`netdsl run`), with the same messages. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..diagnostics import Reporter
from ..ir.dims import substitute
from ..ir.graph import Graph
from .catalog import METRICS
from .sources import DataSig, FieldSig

if TYPE_CHECKING:
    from .plan import Note, Plan

_INT = ("int64", "int32", "uint8", "bool")


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_fit(plan: Plan, sig: DataSig, graph: Graph, rep: Reporter, notes: list[Note]) -> None:
    """Report (E407, E403) where a field of the data does not fit the model input it feeds
    or the loss that trains against it."""
    from .plan import Note

    data_span = plan.span("data")
    fields = sig.fields  # None: the source makes whatever the plan asks for
    sizes: dict = {}  # the declared dimensions' values in this data (symbolic shapes)
    nodes = {n.name: n for n in graph.inputs}
    for name, f in plan.inputs:
        fs = fields.get(f) if fields is not None else None
        if fs is None:
            continue
        x = nodes[name]
        xt = x.types[0]
        span = plan.spans.get(f"inputs.{name}", data_span)
        mapped = f"inputs.{name}" in plan.spans
        own = f == name or mapped  # bound by name, not as the data's one input
        what = f"{sig.name} gives {f}" if own else f"{sig.name} gives samples"
        shape = fs.shape
        if xt.symbolic and shape is not None and None not in shape:
            found = xt.match(tuple(shape))
            if found is None or any(sizes.get(k, v) != v for k, v in found.items()):
                where = "; ".join(d.describe() for d in sorted(xt.dims(), key=lambda d: d.name))
                rep.error("E407", f"{what} of shape {_fmt(shape)}, but {graph.name} takes "
                          f"{x.name}: {_fmt(xt.shape)} where {where}" +
                          (" with the sizes its other inputs have" if found else ""), span,
                          "resize the data (transforms) to an admissible size, or widen the "
                          "model's where clause")
                return
            sizes.update(found)
        elif shape is not None and None not in shape and tuple(shape) != xt.shape:
            if math.prod(shape) == xt.numel:
                hint = (f"declare `input {x.name}: {_fmt(shape)}` and start the model with "
                        "Flatten" if len(xt.shape) == 1 else f"declare `input {x.name}: "
                        f"{_fmt(shape)}`")
            else:
                hint = f"declare `input {x.name}: {_fmt(shape)}`, or change the data's transforms"
            rep.error("E407", f"{what} of shape {_fmt(shape)}, but {graph.name} takes "
                      f"{x.name}: {_fmt(xt.shape)}", span, hint)
        elif shape is not None and len(shape) == len(xt.shape) and any(
                s is None and isinstance(d, int) for s, d in zip(shape, xt.shape)):
            i = next(i for i, (s, d) in enumerate(zip(shape, xt.shape))
                     if s is None and isinstance(d, int))
            dims = ["T" if j == i else str(d) for j, d in enumerate(xt.shape)]
            rep.error("E407", f"{what} of varying length (padded per batch), but "
                      f"{graph.name} takes {x.name}: {_fmt(xt.shape)}, of one length", span,
                      f"declare the length a symbol: input {x.name}: [{', '.join(dims)}] "
                      f"{xt.dtype} where T <= {xt.shape[i]}")
        if fs.dtype is not None and (fs.dtype in _INT) != (xt.dtype in _INT):
            hint = (f"write x_dtype=\"{xt.dtype}\" in the data" if "x_dtype" in
                    type(plan.data).model_fields else None)
            got = f"{f} as {fs.dtype}" if own else f"{fs.dtype} inputs"
            rep.error("E407", f"{sig.name} gives {got}, but {graph.name} takes {x.name}: "
                      f"{xt.dtype}", span, hint)
    for i, t in enumerate(plan.loss):
        if sizes:  # the output's shape at the data's sizes
            t = t.model_copy(update={"output_shape": tuple(substitute(d, sizes)
                                                           for d in t.output_shape)})
        fs = fields.get(t.target) if fields is not None else None
        _check_term(plan, i, t, sig, fs, rep, notes, Note)


def _check_term(plan, i, t, sig: DataSig, fs, rep: Reporter, notes, Note) -> None:
    loss = t.loss
    kind = type(loss).target
    span = plan.span(f"loss.{i}.output") or plan.span("loss")
    out = t.output_shape
    what = f"{loss.kind} needs {type(loss).expects}" if type(loss).expects else loss.kind
    if kind == "class" and t.scores_shape() and not isinstance(t.scores_shape()[0], int):
        # the classes are a fixed number; a size that varies there is a sequence's length
        c = t.scores_shape()[0]
        last = not getattr(loss, "classes_last", False) and isinstance(out[-1], int)
        rep.error("E403", f"{loss.kind} reads the classes of '{t.output}' {_fmt(out)} in its "
                  f"first dimension, {c}, which varies", span,
                  f"the scores are classes last ({out[-1]} classes): write {loss.kind}("
                  f"{t.output}, {t.target}, classes_last=true)" if last else
                  "give the output a fixed number of classes first")
        return
    if fs is None:
        return
    labels = fs.kind == "class"
    if fs.labels is not None and kind in ("class", "binary") and labels:
        rule = t.label_rule()
        for where, values in fs.labels if rule else ():
            problem = label_problem(values, where, rule)
            if problem:
                rep.error("E412", problem[0], plan.span(f"data.{where}"), problem[1])
                return
    target = fs.shape
    if kind == "class" and target and None in target \
            and getattr(loss, "ignore_index", -100) != -100:
        rep.error("E403", f"'{t.target}' is padded per batch with -100, which {loss.kind} "
                  f"must ignore, but its ignore_index is {loss.ignore_index}",
                  plan.span(f"loss.{i}"), "leave ignore_index at its default, -100")
        return
    if kind == "class":
        written = out
        out = t.scores_shape()
        dense = type(loss).dense and len(out) > 1 and target != ()
        if target is not None and len(target) > 0 and not dense:
            rep.error("E403", f"{loss.kind} over '{t.output}' {_fmt(out)} against '{t.target}' "
                      f"{_fmt(target)}: one label per position needs scores [C, "
                      f"{', '.join(map(str, target))}]", span,
                      f"give the model an output of shape [C, {', '.join(map(str, target))}]")
            return
        if len(out) != 1 and not dense:
            rep.error("E403", f"{what}: a vector [C] per sample, but '{t.output}' is {_fmt(out)}",
                      span, "end the model with Flatten -> Linear(C)" if len(out) > 1 else
                      "give the output one score per class")
        elif dense and target is not None and not _fits(target, out[1:]):
            last = tuple(target) == tuple(written[:-1]) and not getattr(loss, "classes_last", False)
            rep.error("E403", f"{loss.kind} over '{t.output}' {_fmt(written)} needs labels of "
                      f"shape {_fmt(out[1:])} (torch reads the classes in dim 1), but "
                      f"'{t.target}' is {_fmt(target)}", span,
                      f"the scores are [{', '.join(map(str, written))}], classes last: write "
                      f"{loss.kind}({t.output}, {t.target}, classes_last=true)" if last else
                      f"give the model an output of shape [C, {', '.join(map(str, target))}]"
                      if target else "give the model an output of shape [C]")
        elif out[0] == 1:
            rep.error("E403", f"'{t.output}' has a single score per sample, which cannot be a "
                      f"distribution over classes", span,
                      "for two classes use Linear(2), or BCEWithLogitsLoss with one score")
        elif fs.labels is None and fs.num_classes is not None and out[0] < fs.num_classes:
            rep.error("E403", f"'{t.output}' has {out[0]} class scores, but {sig.name} has "
                      f"{fs.num_classes} classes", span,
                      f"end the model with Linear({fs.num_classes})")
        return
    if kind == "binary":
        if labels:
            if fs.num_classes is not None and fs.num_classes > 2:
                rep.error("E403", f"{loss.kind} trains 0/1 targets, but {sig.name} has "
                          f"{fs.num_classes} classes", plan.span(f"loss.{i}"),
                          "use CrossEntropyLoss for more than two classes")
            elif target == () and out != (1,):
                rep.error("E403", f"{loss.kind} on class labels needs one score per sample, "
                          f"but '{t.output}' is {_fmt(out)}", span, "end the model with Linear(1)")
            elif target == ():
                notes.append(Note(f"{loss.kind}: the 0/1 labels are used as float targets of "
                                  f"shape [1], like '{t.output}'", plan.span(f"loss.{i}")))
            return
    if target is None:
        return
    if tuple(target) != tuple(out):
        rep.error("E403", f"{loss.kind} compares '{t.output}' {_fmt(out)} with the data's "
                  f"'{t.target}' of shape {_fmt(target)}; the shapes must match (netdsl does not broadcast)", span,
                  f"give the model an output of shape {_fmt(target)}")
    elif fs.note:
        notes.append(Note(f"{fs.note} to match '{t.output}' {_fmt(out)}; torch's "
                          f"{loss.kind} would broadcast [N] targets against [N, 1] predictions "
                          "to [N, N] and fit every prediction to the mean",
                          plan.span(f"data.{t.target}") or plan.span("data")))


def _fits(target, shape) -> bool:
    """Whether a field's shape is `shape` (a None in it: a length that varies, any)."""
    return len(target) == len(shape) and all(t is None or t == s for t, s in zip(target, shape))


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}..{hi}"


def label_problem(values: Sequence[int], where: str, rule: dict) -> tuple[str, str] | None:
    """(message, hint) when a label in `values` is not one `rule` (`LossTerm.label_rule`)
    allows: E412, worded as runtime/data.py's `check_labels` words it when the data loads."""
    binary, ignore = rule["binary"], rule["ignore_index"]
    n = 2 if binary else int(rule["classes"])
    bad = [i for i, v in enumerate(values) if not (0 <= v < n or v == ignore)]
    if not bad:
        return None
    real = [v for v in values if v != ignore]
    lo, hi = min(real), max(real)
    out = f"'{rule['output']}'"
    msg = (f"{where} holds labels {_span(lo, hi)}, but {rule['loss']} trains 0/1 labels on {out}"
           if binary else f"{where} holds labels {_span(lo, hi)}, but {out} has {n} classes "
           f"(0..{n - 1}) for {rule['loss']}")
    msg += (f": {len(bad):,} of {len(values):,} labels are outside, the first is "
            f"{values[bad[0]]} (sample {bad[0]})")
    if lo < 0:
        hint = "class labels count from 0: fix the labels"
        negative = {v for v in real if v < 0}
        if ignore is not None and len(negative) == 1:
            hint += (f", or write {rule['loss']}(ignore_index={negative.pop()}) to skip the "
                     "samples labelled so")
    elif binary:
        hint = "use CrossEntropyLoss with one score per class, or relabel the data 0/1"
    else:
        hint = (f"fix the labels, or give {out} {hi + 1} class scores (end the model with "
                f"Linear({hi + 1})) if the data has {hi + 1} classes")
    return msg, hint


def monitor_keys(plan: Plan, has_val: bool) -> list[str]:
    """Every metric key a run reports per epoch (`train.loss`, `val.accuracy`, ...)."""
    keys = []
    for split in ("train", "val") if has_val else ("train",):
        keys.append(f"{split}.loss")
        for t in plan.loss:
            if t.prefix:
                keys.append(f"{split}.{t.prefix}loss")
            for m in plan.metrics:
                if type(t.loss).target in METRICS[m][0].split():
                    keys.append(f"{split}.{t.prefix}{m}")
    return keys


def runtime_signature(info, source_name: str) -> DataSig:
    """A DataSig from the loaded data's `DataInfo` (runtime/data.py)."""
    fields = {k: FieldSig(tuple(f.shape), f.dtype, f.kind, f.num_classes)
              for k, f in info.fields.items()}
    return DataSig(source_name, fields, target=info.target, has_val="val" in info.sizes,
                   has_test="test" in info.sizes)
