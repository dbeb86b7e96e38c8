"""Building a `Plan` from a train section and overrides: merging settings, binding each one
to its declaration, reading the loss expression, and the checks between them. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..diagnostics import Reporter, did_you_mean
from ..ir.graph import Graph
from ..ops.base import describe_type
from ..source import Span
from ..syntax import ast
from .catalog import LOSSES, METRICS, OPTIMIZERS, PRECISIONS, metric_mode
from .checks import check_fit, monitor_keys
from .decl import ERR, Arg, Bound, bind, call_parts, expr_value, lookup, show
from .plan import _DEVICE, HABITS, SETTINGS, TARGETS, LossTerm, Note, Plan, device_problem
from .sources import DataSig
from ..ir.dims import dims_of, value_at


@dataclass
class _Entry:
    """One top-level setting as written: `KEY = ...` and its `KEY.ARG = ...` lines."""

    base: ast.Setting | None = None
    subs: dict[str, ast.Setting] = field(default_factory=dict)


class Builder:
    """Builds one plan; every mistake goes to `rep`, as many as can be found at once."""

    def __init__(self, graph: Graph, train, overrides, rep: Reporter, where):
        self.graph, self.train, self.rep = graph, train, rep
        self.overrides = list(overrides)
        self.spans: dict[str, Span] = {}
        self.notes: list[Note] = []
        self.where = train.name_span if train is not None else where
        if self.where is not None:
            self.spans["train"] = self.where

    # ---- gathering settings ------------------------------------------------------------------
    def merge(self) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        own = self.train.settings if self.train is not None else []
        for s, from_spec in [(s, True) for s in own] + [(s, False) for s in self.overrides]:
            top = s.key[0]
            if top not in SETTINGS:
                hint = (f"write {HABITS[top]} = ..." if top in HABITS else
                        did_you_mean(top, SETTINGS) or f"settings: {', '.join(SETTINGS)}")
                self.rep.error("E402", f"unknown setting '{'.'.join(s.key)}'", s.key_span, hint)
                continue
            if len(s.key) > 2:
                self.rep.error("E402", f"'{'.'.join(s.key)}' goes too deep; a setting is NAME or "
                               "NAME.ARGUMENT", s.key_span)
                continue
            e = entries.setdefault(top, _Entry())
            if len(s.key) == 1:
                if from_spec and e.base is not None and e.base.key_span.source is s.key_span.source:
                    self._twice(s, e.base)
                    continue
                e.base, e.subs = s, {}
            else:
                arg = s.key[1]
                old = e.subs.get(arg)
                if from_spec and old is not None and old.key_span.source is s.key_span.source:
                    self._twice(s, old)
                    continue
                e.subs[arg] = s
        return entries

    def _twice(self, s: ast.Setting, first: ast.Setting) -> None:
        self.rep.error("E401", f"'{'.'.join(s.key)}' is set twice", s.key_span,
                       notes=[("first set here", first.key_span)])

    # ---- values and declarations -------------------------------------------------------------
    def value(self, key: str, e: _Entry | None) -> Any:
        decl = SETTINGS[key]
        if e is not None:
            self._no_subs(key, e)
        if e is None or e.base is None:
            return decl.default
        v = expr_value(e.base.value, self.rep)
        if v is ERR:
            return ERR
        self.spans[key] = e.base.value.span
        try:
            return TypeAdapter(decl.type).validate_python(v)
        except ValidationError:
            self.rep.error("E401", f"{key}={show(v)} is invalid; expected "
                           f"{describe_type(decl.type)}", e.base.value.span)
            return ERR

    def _no_subs(self, key: str, e: _Entry) -> None:
        for sub in e.subs.values():
            self.rep.error("E402", f"{key} takes no arguments", sub.key_span, f"write {key} = ...")

    def call(self, key: str, e: _Entry | None) -> Bound | object | None:
        """A declaration setting (data, optimizer, ...): None when off, ERR on error."""
        decl = SETTINGS[key]
        family = decl.family
        required = decl.kind == "source"
        base = e.base if e else None
        subs = dict(e.subs) if e else {}
        const = base is not None and isinstance(base.value, ast.Const)
        if const and base.value.value is not True:  # KEY = none / false
            if not decl.optional:
                self.rep.error("E401", f"{key} cannot be turned off", base.value.span,
                               f"for example: {key} = {_EXAMPLES[key]}")
                return ERR
            for sub in subs.values():
                self.rep.error("E401", f"{key} is turned off, so '{'.'.join(sub.key)}' has no "
                               "effect", sub.key_span, notes=[("turned off here", base.value.span)])
            self.spans[key] = base.value.span
            return None
        if base is None or const:
            default = decl.enable if (const or subs) else decl.default
            if default is None:
                if base is None and not subs and not required:
                    return None
                if required and base is None:
                    self.rep.error("E401", f"the training plan needs {key} = ...", self.where,
                                   f"for example: {key} = {_EXAMPLES[key]}")
                elif const:
                    self.rep.error("E401", f"say which {family.what} to use", base.value.span,
                                   f"for example: {key} = {_EXAMPLES[key]}")
                for sub in subs.values():
                    self.rep.error("E401", f"'{'.'.join(sub.key)}' is set, but no {key} is chosen",
                                   sub.key_span, f"write {key} = {_EXAMPLES[key]}")
                return ERR
            cls = family.lookup(default)
            args: list[Arg] = []
            span = base.value.span if base is not None else (
                next(iter(subs.values())).key_span if subs else self.where)
        else:
            parts = call_parts(base.value)
            if parts is None:
                self.rep.error("E401", f"{key} expects a {family.what} such as {_EXAMPLES[key]}",
                               base.value.span)
                return ERR
            name, args = parts
            cls = lookup(family, name, self.rep)
            if cls is None:
                return ERR
            span = base.value.span
        self.spans[key] = span
        merged, npos = [], 0
        positional = cls.positional_fields()
        for a in args:
            if a.name is None and npos < len(positional):
                a = Arg(positional[npos], None, a.value)
                npos += 1
            if a.name in subs:
                continue  # NAME.ARGUMENT wins over the argument in the call
            merged.append(a)
        for arg, sub in subs.items():
            from_cli = sub.key_span.source.name == "--data-root"
            if key == "data" and arg not in cls.model_fields and from_cli:
                self.notes.append(Note(f"--data-root is ignored: {cls.kind} data has no root",
                                       sub.key_span))
                continue
            merged.append(Arg(arg, sub.key_span, sub.value))
        bound = bind(cls, merged, span, self.rep)
        if bound is None:
            return ERR
        for arg, s in bound.arg_spans.items():
            self.spans[f"{key}.{arg}"] = s
        return bound

    # ---- losses --------------------------------------------------------------------------------
    def losses(self, e: _Entry | None, task: str | None, data_ok: bool) -> list[tuple] | object:
        """[(weight, Bound, output name, output span, target name, target span)] or ERR."""
        if e is not None:
            self._no_subs("loss", e)
        if e is None or e.base is None:
            outs = self.graph.outputs
            if task is None and not data_ok:
                return ERR  # the data's own error says enough
            if task is None:
                self.rep.error("E401", "say which loss to train: the data does not tell whether "
                               "this is classification or regression", self.where,
                               "for example: loss = MSELoss  or  loss = CrossEntropyLoss")
                return ERR
            if len(outs) != 1:
                self.rep.error("E401", f"{self.graph.name} has {len(outs)} outputs "
                               f"({', '.join(o.name for o in outs)}); say which loss trains which",
                               self.where, f"for example: loss = CrossEntropyLoss({outs[0].name}, "
                               "label) + ...")
                return ERR
            kind = "CrossEntropyLoss" if task == "classification" else "MSELoss"
            bound = bind(LOSSES.lookup(kind), [], self.where, self.rep)
            field = (self.data_sig.target if self.data_sig is not None else None) or "target"
            self.notes.append(Note(f"loss = {kind}({outs[0].name}, {field}): the default for "
                                   f"{task} data", self.where))
            return [(1.0, bound, outs[0].name, self.where, "target", self.where)]
        self.spans["loss"] = e.base.value.span
        terms = self._terms(e.base.value, 1.0)
        if terms is ERR:
            return ERR
        out = [self._term(weight, expr) for weight, expr in terms]  # each reports its own
        return ERR if ERR in out else out

    def _terms(self, expr, weight: float):
        """[(weight, loss call)] from `0.5 * A(...) + B(...) / 4`; ERR after a report."""
        lossy = _mentions_loss
        if isinstance(expr, ast.BinOp) and expr.op == "+":
            a = self._terms(expr.left, weight)
            b = self._terms(expr.right, weight)
            return ERR if a is ERR or b is ERR else a + b
        if (isinstance(expr, ast.BinOp) and expr.op in ("*", "/")
                and lossy(expr.left) != lossy(expr.right)):
            term, const = (expr.left, expr.right) if lossy(expr.left) else (expr.right, expr.left)
            if expr.op == "/" and term is expr.right:
                self.rep.error("E401", "a loss can be divided by a number, not the other way round",
                               expr.span)
                return ERR
            c = expr_value(const, self.rep)
            if c is ERR:
                return ERR
            number = isinstance(c, (int, float)) and not isinstance(c, bool)
            if not number or not math.isfinite(c) or c <= 0:
                self.rep.error("E401", f"a loss weight must be a positive number, got {show(c)}",
                               const.span)
                return ERR
            return self._terms(term, weight * c if expr.op == "*" else weight / c)
        if isinstance(expr, (ast.Name, ast.Call)):
            return [(weight, expr)]
        self.rep.error("E401", "a loss is a loss term or a weighted sum of them", expr.span,
                       "for example: loss = 0.5 * CrossEntropyLoss(a, label) + 0.5 * "
                       "CrossEntropyLoss(b, label)")
        return ERR

    def _term(self, weight: float, expr):
        parts = call_parts(expr)
        if parts is None:
            self.rep.error("E401", "expected a loss such as CrossEntropyLoss(logits, label)",
                           expr.span)
            return ERR
        name, args = parts
        cls = lookup(LOSSES, name, self.rep)
        if cls is None:
            return ERR
        pos = [a for a in args if a.name is None]
        if len(pos) > 2:
            self.rep.error("E401", f"{cls.kind} takes the output and the target positionally; "
                           "name the other arguments", pos[2].value.span,
                           f"for example {cls.kind}(logits, label, reduction=\"sum\")")
            return ERR
        ok = True
        outs = [o.name for o in self.graph.outputs]
        out_name, out_span = None, expr.span
        if pos:
            if not isinstance(pos[0].value, ast.Name):
                self.rep.error("E401", f"{cls.kind}'s first argument is one of {self.graph.name}'s "
                               f"outputs ({', '.join(outs)})", pos[0].value.span)
                ok = False
            else:
                out_name, out_span = pos[0].value.id, pos[0].value.span
                if out_name not in outs:
                    self._unknown_output(out_name, out_span)
                    ok = False
        elif len(outs) == 1:
            out_name = outs[0]
        else:
            self.rep.error("E401", f"{self.graph.name} has {len(outs)} outputs "
                           f"({', '.join(outs)}); say which one {cls.kind} trains", expr.span,
                           f"for example {cls.kind}({outs[0]}, label)")
            ok = False
        target, tspan = "target", out_span
        if len(pos) == 2:
            t = pos[1].value
            if not isinstance(t, ast.Name):
                self.rep.error("E405", "expected the name of a field of the data, such as "
                               "label", t.span, f"for example {cls.kind}({out_name or 'out'}, "
                               "label)")
                ok = False
            else:
                target, tspan = t.id, t.span
                ok = self._known_field(target, tspan) and ok
        bound = bind(cls, [a for a in args if a.name is not None], expr.span, self.rep)
        if bound is None or not ok:
            return ERR
        return (weight, bound, out_name, out_span, target, tspan)

    def _known_field(self, name: str, span: Span) -> bool:
        """Whether the data has a field `name` (or `label`/`target` name its one target);
        E405 with the fields there are when not."""
        sig = getattr(self, "data_sig", None)
        if sig is None or sig.fields is None or name in sig.fields:
            return True
        names = list(sig.fields)
        if name in TARGETS and sig.target is not None:
            return True
        hint = did_you_mean(name, names)
        if hint is None and name in TARGETS:
            hint = (f"{sig.name} has no one target: name the field the loss trains against "
                    f"({', '.join(names)})")
        self.rep.error("E405", f"{sig.name} has no field '{name}'", span,
                       hint or f"{sig.name}'s fields: {', '.join(names)}")
        return False

    def _unknown_output(self, name: str, span: Span) -> None:
        outs = [o.name for o in self.graph.outputs]
        inside = {b for n in self.graph.nodes for b in n.bound if b} | {
            n.name for n in self.graph.nodes}
        if name in inside:
            self.rep.error("E405", f"'{name}' is a value inside {self.graph.name}, not one of its "
                           "outputs", span,
                           f"a loss trains an output; list it: output {', '.join([*outs, name])}")
        else:
            self.rep.error("E405", f"{self.graph.name} has no output '{name}'", span,
                           did_you_mean(name, outs) or f"its outputs: {', '.join(outs)}")

    # ---- the whole plan ------------------------------------------------------------------------
    def build(self) -> Plan | None:
        rep = self.rep
        entries = self.merge()
        get = entries.get
        values = {k: self.value(k, get(k)) for k, d in SETTINGS.items() if d.kind == "value"}
        data = self.call("data", get("data"))
        optimizer = self.call("optimizer", get("optimizer"))
        scheduler = self.call("scheduler", get("scheduler"))
        early = self.call("early_stopping", get("early_stopping"))
        ckpt = self.call("checkpoint", get("checkpoint"))
        dist = self.call("distributed", get("distributed"))
        self._canonical(values)
        fixed_task = None
        self.data_sig = None
        if isinstance(data, Bound):
            fixed_task = data.decl.implied_task()
            self.data_sig = data.decl.signature(None)
        terms = self.losses(get("loss"), fixed_task, data is not ERR)
        names = self._metric_names(get("metrics"))
        if terms is ERR:
            return None
        # From here on, settings that failed take their defaults so that the checks that
        # remain can still run and report their own findings in the same pass.
        loss_terms = self._loss_terms(terms)
        metrics = self._metrics(names, loss_terms)
        if data is ERR:
            return None
        bound = self._fields(data, terms, get("inputs"))
        if bound is ERR:
            return None
        inputs, fields, uses = bound
        terms = [(*t[:4], f, t[5]) for t, f in zip(terms, fields)]
        loss_terms = [lt.model_copy(update={"target": f}) for lt, f in zip(loss_terms, fields)]
        sig0 = data.decl.signature(None)
        task = None
        for f in dict.fromkeys(fields):  # the losses on one field agree on what it holds
            kind = self._task([t for t in terms if t[4] == f])
            if kind is ERR:
                return None
            if f == sig0.target:
                task = kind
        if task is not None:
            task = self._data_task([t for t in terms if t[4] == sig0.target], data, task)
            if task is ERR:
                return None
        sig = data.decl.signature(task, uses if type(data.decl).by_use else None)
        loss_terms = [t.model_copy(update={"metrics": tuple(
            m for m in metrics if type(t.loss).target in METRICS[m][0].split())})
            for t in loss_terms]
        values = {k: (SETTINGS[k].default if v is ERR else v) for k, v in values.items()}
        plan = Plan(
            model=self.graph.name, data=data.decl, task=sig.task, loss=loss_terms,
            optimizer=(optimizer.decl if isinstance(optimizer, Bound)
                       else OPTIMIZERS.lookup("Adam")()),
            scheduler=scheduler.decl if isinstance(scheduler, Bound) else None,
            early_stopping=early.decl if isinstance(early, Bound) else None,
            checkpoint=ckpt.decl if isinstance(ckpt, Bound) else None,
            distributed=dist.decl if isinstance(dist, Bound) else None,
            metrics=metrics, monitor="train.loss", spans=self.spans, signature=sig,
            inputs=inputs, fields=self._field_specs(uses, inputs, loss_terms, data, sig),
            **values)
        for i, t in enumerate(terms):
            plan.spans[f"loss.{i}.output"], plan.spans[f"loss.{i}.target"] = t[3], t[5]
            plan.spans[f"loss.{i}"] = t[1].span
        check_fit(plan, sig, self.graph, rep, self.notes)
        plan = self._monitors(plan, sig)
        plan.notes[:] = self.notes
        return None if rep.has_errors else plan

    def _canonical(self, values: dict) -> None:
        """precision aliases (float16 -> fp16); device names checked."""
        rep = self.rep
        precision = values["precision"]
        if precision is not ERR:
            canon = PRECISIONS.get(str(precision).lower())
            if canon is None:
                rep.error("E401", f"unknown precision {show(precision)}",
                          self.spans.get("precision"),
                          did_you_mean(str(precision), ["fp32", "bf16", "fp16"]) or
                          "one of: fp32, bf16, fp16")
            values["precision"] = canon or ERR
        if values["workers"] not in (ERR, 0):
            self.notes.append(Note(
                f"workers = {values['workers']} has no effect here: data that fits in memory "
                "is batched by slicing tensors on the device; sources that stream from disk "
                "take their own (ImageFolder(..., workers=N))", self.spans.get("workers")))
        if values["unfreeze_at"] not in (ERR, None) and values["freeze"] in (ERR, None):
            rep.error("E401", "unfreeze_at has nothing to unfreeze: say which parameters "
                      "are frozen until then", self.spans.get("unfreeze_at"),
                      'for example: freeze = "backbone.*"')
        device = values["device"]
        bad_index = device_problem(device) if device is not ERR else None
        if bad_index:
            rep.error("E411", bad_index[0], self.spans.get("device"), bad_index[1])
            values["device"] = ERR
        elif device is not ERR and not _DEVICE.match(device):
            rep.error("E401", f"unknown device {show(device)}", self.spans.get("device"),
                      'for a GPU write device = "cuda"' if device.lower().startswith("gpu") else
                      did_you_mean(device, ["auto", "cpu", "cuda", "mps"]) or
                      "one of: auto, cpu, cuda, cuda:N, mps")
            values["device"] = ERR

    # ---- fields ------------------------------------------------------------------------------
    def _fields(self, data: Bound, terms, e: _Entry | None):
        """Bind every model input and every loss target to a field of the data:
        ([(input, field)] in the model's order, [field per loss term], {field: kind}); ERR
        after reporting. An input takes the field of its name, or the field stated by
        `inputs.NAME = "field"`, or, for a one-input model, the data's one input field;
        `label` and `target` name the data's one target field."""
        rep, graph = self.rep, self.graph
        sig = data.decl.signature(None)
        names = None if sig.fields is None else list(sig.fields)
        src = data.decl.kind
        listed = f"{src}'s fields: {', '.join(names)}" if names else ""
        model_inputs = [n.name for n in graph.inputs]
        mapping: dict[str, tuple[str, Span]] = {}
        ok = True
        if e is not None:
            if e.base is not None:
                rep.error("E402", "inputs maps each model input to a field: write "
                          "inputs.NAME = \"field\"", e.base.key_span,
                          f'for example: inputs.{model_inputs[0]} = "image"')
                ok = False
            for arg, sub in e.subs.items():
                v = sub.value
                field_name = v.id if isinstance(v, ast.Name) else expr_value(v, rep)
                if field_name is ERR:
                    ok = False
                    continue
                if arg not in model_inputs:
                    rep.error("E405", f"{graph.name} has no input '{arg}'", sub.key_span,
                              did_you_mean(arg, model_inputs) or
                              f"its inputs: {', '.join(model_inputs)}")
                    ok = False
                elif not isinstance(field_name, str) or (names is not None and
                                                          field_name not in names):
                    rep.error("E405", f"{src} has no field {show(field_name)}", v.span,
                              did_you_mean(str(field_name), names or []) or listed or None)
                    ok = False
                else:
                    mapping[arg] = (field_name, v.span)
                    self.spans[f"inputs.{arg}"] = v.span
        natural = sig.inputs()
        inputs = []
        for name in model_inputs:
            if name in mapping:
                inputs.append((name, mapping[name][0]))
            elif names is None or name in names:
                inputs.append((name, name))
            elif len(model_inputs) == 1 and len(natural) == 1:
                inputs.append((name, natural[0]))
            else:
                guess = did_you_mean(name, names)
                how = f'write inputs.{name} = "FIELD" in the train section'
                rep.error("E407", f"{graph.name}'s input '{name}' has no field in the data "
                          f"({listed})", self.spans.get("data", self.where),
                          f"{guess}, or {how}" if guess else f"name a field {name}, or {how}")
                ok = False
        fields = []
        for t in terms:
            want, span = t[4], t[5]
            if names is None or want in names:
                fields.append(want)
            elif want in TARGETS and sig.target is not None:
                fields.append(sig.target)
            else:
                ok = self._known_field(want, span) and ok
                fields.append(None)
        if not ok:
            return ERR
        uses: dict[str, str] = {}
        for t, f in zip(terms, fields):
            uses.setdefault(f, "values" if type(t[1].decl).target == "same" else "class")
        for _, f in inputs:
            uses[f] = "input"
        if type(data.decl).open_type is not None and data.decl.open_fields_() and names:
            for k in names:
                if k not in uses:
                    words = [*model_inputs, *(t[4] for t in terms),
                             *type(data.decl).model_fields]
                    guess = did_you_mean(k, [w for w in words if w != k and w != "open_fields"])
                    rep.error("E402", f"{src}'s field '{k}' is used by neither {graph.name} "
                              "nor a loss", self._data_arg(data, k),
                              guess or f"feed it to an input (inputs.NAME = \"{k}\"), train "
                              "a loss against it, or leave it out")
                    ok = False
        return (inputs, fields, uses) if ok else ERR

    def _data_arg(self, data: Bound, name: str) -> Span:
        return data.at(name)

    def _field_specs(self, uses: dict[str, str], inputs, terms: list[LossTerm], data: Bound,
                     sig: DataSig) -> dict[str, dict[str, Any]]:
        """How load_data reads each field ({"kind": ...}); for a source that makes what the
        plan asks for (synthetic), also its shape, dtype, classes and token count."""
        specs: dict[str, dict[str, Any]] = {f: {"kind": k} for f, k in uses.items()}
        graph = self.graph
        nodes = {n.name: n for n in graph.inputs}
        for name, f in inputs:  # ids an Embedding reads are checked against its size
            vocab = _vocab(graph, name)
            if vocab is not None:
                specs[f]["vocab"] = vocab
        if sig.fields is not None:
            return specs
        for name, f in inputs:
            ty = nodes[name].types[0]
            sizes = {d.name: _sample_size(d) for d in ty.dims()}
            shape = [int(value_at(d, sizes)) for d in ty.shape]
            vocab = specs[f].get("vocab") or getattr(data.decl, "vocab", None)
            specs[f].update(shape=shape, dtype=ty.dtype, vocab=vocab)
            if ty.dtype not in ("float32", "float64", "float16", "bfloat16", "bool") and not vocab:
                self.rep.error("E401", f"synthetic {ty.dtype} input '{name}' holds token ids: say "
                               "how many with vocab=N", data.span,
                               "for example: synthetic(n=512, vocab=100)")
        for t in terms:
            spec = specs[t.target]
            if spec["kind"] == "input":
                continue
            out = list(t.output_shape)
            sizes = {d.name: _sample_size(d) for d in dims_of(out)}
            out = [int(value_at(d, sizes)) for d in out]
            if type(t.loss).target == "class":
                spec.update(shape=out[1:], classes=out[0] if out else None)
            elif type(t.loss).target == "binary":
                spec.update(shape=out, classes=2)
            else:
                spec.update(shape=out, dtype="float32")
        return specs

    def _task(self, terms):
        """The task the losses on one field imply; E403 when they disagree."""
        task = None
        for kind, b in [(type(t[1].decl).target, t[1]) for t in terms]:
            want = "regression" if kind == "same" else "classification"
            if task is None:
                task, first = want, b
            elif want != task:
                self.rep.error("E403", f"{b.decl.kind} needs {_TARGET_WORDS[kind]}, but "
                               f"{first.decl.kind} needs {_TARGET_WORDS[type(first.decl).target]}; "
                               f"both train against the data's '{terms[0][4]}'", b.span)
                return ERR
        return task

    def _data_task(self, terms, data: Bound, task: str):
        """E403 when the losses' task is not the data's."""
        kinds = [(type(t[1].decl).target, t[1]) for t in terms]
        fixed = data.decl.implied_task()
        if fixed is not None and task != fixed:
            kind, b = kinds[0]
            what = (f"{data.decl.kind}'s targets are class labels" if fixed == "classification"
                    else f"this data is {fixed} (task=\"{fixed}\")")
            self.rep.error("E403", f"{b.decl.kind} needs {_TARGET_WORDS[kind]}, but {what}", b.span,
                           "use CrossEntropyLoss for class labels" if fixed == "classification"
                           else "use MSELoss, L1Loss or HuberLoss for real-valued targets")
            return ERR
        return task

    def _loss_terms(self, terms) -> list[LossTerm]:
        outs = [o.name for o in self.graph.outputs]
        labels = [t[2] for t in terms]
        out = []
        for i, (weight, bound, name, _, target, _) in enumerate(terms):
            ref = self.graph.outputs[outs.index(name)].ref
            ty = self.graph.type_of(ref)
            label = name if labels.count(name) == 1 else f"{name}_{labels[:i + 1].count(name)}"
            out.append(LossTerm(loss=bound.decl, output=name, output_index=outs.index(name),
                                output_shape=ty.shape if ty else (), target=target, weight=weight,
                                prefix="" if len(terms) == 1 else f"{label}."))
        return out

    def _metric_names(self, e: _Entry | None):
        """[(name, span)] as written (None: not written); unknown names reported."""
        if e is None:
            return None
        self._no_subs("metrics", e)
        if e.base is None:
            return None
        expr = e.base.value
        self.spans["metrics"] = expr.span
        items = expr.items if isinstance(expr, (ast.ListExpr, ast.TupleExpr)) else [expr]
        out = []
        for item in items:
            v = expr_value(item, self.rep)
            if v is ERR or v == "loss":  # the loss is always reported
                continue
            if v not in METRICS:
                self.rep.error("E405", f"unknown metric '{v}'", item.span,
                               did_you_mean(str(v), METRICS) or f"metrics: {', '.join(METRICS)}")
                continue
            if v not in [n for n, _ in out]:
                out.append((v, item.span))
        return out

    def _metrics(self, names, terms: list[LossTerm]) -> tuple[str, ...]:
        """The metrics to report: those written that fit a loss here, else the defaults."""
        kinds = {type(t.loss).target for t in terms}
        if names is None:
            unasked = {type(t.loss).target for t in terms if type(t.loss).default_metrics}
            return tuple(m for m in ("accuracy", "mae") if set(METRICS[m][0].split()) & unasked)
        out = []
        for name, span in names:
            if not set(METRICS[name][0].split()) & kinds:
                self.rep.error("E401", f"{name} does not apply to any loss here "
                               f"({METRICS[name][2]})", span)
                continue
            summed = [t for t in terms if type(t.loss).target == "class"
                      and getattr(t.loss, "reduction", "mean") != "mean"]
            if name == "perplexity" and summed:
                self.rep.error("E401", f"perplexity is the exp of the mean cross-entropy per "
                               f"label, but {summed[0].loss.kind} sums (reduction=\"sum\")", span,
                               "drop reduction=\"sum\", or the perplexity metric")
                continue
            out.append(name)
        return tuple(out)

    def _monitors(self, plan: Plan, sig: DataSig) -> Plan | None:
        keys = monitor_keys(plan, sig.has_val)
        default = "val.loss" if sig.has_val else "train.loss"
        updates: dict[str, Any] = {}
        for key, decl in (("early_stopping", plan.early_stopping), ("checkpoint", plan.checkpoint),
                          ("scheduler", plan.scheduler)):
            if decl is None or "monitor" not in type(decl).model_fields:
                continue
            mon = decl.monitor or default
            if mon not in keys:
                span = plan.spans.get(f"{key}.monitor", plan.spans.get(key))
                if mon.startswith("val.") and not sig.has_val:
                    self.rep.error("E401", f"{key} monitors {mon}, but there is no validation "
                                   "split", span, "add val=0.1 to the data to hold out 10%")
                else:
                    self.rep.error("E405", f"unknown metric '{mon}'", span,
                                   did_you_mean(mon, keys) or f"metrics: {', '.join(keys)}")
                continue
            change = {"monitor": mon}
            if getattr(decl, "mode", None) is None:
                change["mode"] = metric_mode(mon)
            updates[key] = decl.model_copy(update=change)
        monitor = (updates.get("checkpoint") or updates.get("early_stopping"))
        updates["monitor"] = monitor.monitor if monitor is not None else default
        return plan.model_copy(update=updates)


def _sample_size(d) -> int:
    """The size synthetic data takes for a declared dimension: the smallest admissible one
    from 32 on (one that small would be a degenerate sample), else the largest."""
    v = max(d.first, -(-32 // d.step) * d.step)
    return v if d.last is None or v <= d.last else d.last


def _vocab(graph: Graph, name: str) -> int | None:
    """The number of ids an integer input can take: the Embedding it feeds, if any."""
    for n in graph.nodes:
        op = n.op
        if op is not None and type(op).__name__ == "Embedding" and any(
                r.node == name for r in n.inputs):
            return int(op.num_embeddings)
    return None


def _mentions_loss(expr) -> bool:
    from ..passes.names import walk

    return any(isinstance(e, (ast.Name, ast.Call)) for e in walk(expr))


_TARGET_WORDS = {"class": "class labels", "binary": "0/1 targets",
                 "same": "real-valued targets shaped like the output"}
_EXAMPLES = {"data": 'MNIST(root="data", download=true)',
             "optimizer": "SGD(lr=0.01, momentum=0.9)",
             "scheduler": "StepLR(step_size=1, gamma=0.7)",
             "early_stopping": "EarlyStopping(patience=3)",
             "checkpoint": 'Checkpoint(keep="best")'}


