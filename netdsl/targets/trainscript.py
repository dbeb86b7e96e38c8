"""The training half of a compiled file: the script a person would write for this one plan.

`netdsl run` interprets a resolved plan (runtime/plan.py `Plan.settings()`, plain values) with
the generic runtime (runtime/data.py, runtime/loop.py). Here the same settings are written out
as straight-line PyTorch, in the shape of pytorch/examples' mnist/main.py: the data setup with
only the source and transforms the plan uses, `compute` (one batch's loss and metric sums),
`train_one_epoch`, `evaluate`, and `main()` with argparse, where the optimizer, scheduler, loss
terms, early stopping and checkpoints appear as direct calls with the plan's values as
literals. Nothing is looked up in a settings dict at run time and nothing the plan does not use
is written.

The script trains exactly as `netdsl run` does (tests/test_compile_train.py compares histories,
test metrics and best epochs bit for bit, resume included), so it follows the runtime where
that decides a number: the seeded draws (`seeded`: the same generator tags), whole-split
transforms, per-step sums in float64 summed once per epoch, a divergence check every 50 steps.

A plan that uses what this writer does not yet write out (see `unsupported`) compiles to the
generic runtime inlined into the file (targets/inlined.py), with a comment that says why.
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .lower import ClassDef
from .pyformat import format_statement
from .pysource import class_source, doc_text, literal, sorted_imports

TV_SOURCES = ("MNIST", "FashionMNIST", "CIFAR10")
SOURCES = (*TV_SOURCES, "tensors", "synthetic")
METRICS = ("accuracy", "top5", "mae", "rmse", "perplexity")
# the data settings every source may carry (the rest are the source's own)
DATA_OPTIONS = ("source", "root", "download", "val", "test", "transforms", "seed", "label_check",
                "fields", "limit", "x_dtype")
CHECK_EVERY = 50  # optimizer steps between checks that the loss is finite (as the runtime)

# what the script defines at the top level; model classes are renamed around these
NAMES = frozenset({
    "argparse", "hashlib", "json", "math", "os", "sys", "time", "torch", "nn", "datasets",
    "annotations", "zipfile", "Diverged", "check", "seeded", "load_data", "hold_out",
    "batches", "compute", "metrics", "train_one_epoch", "evaluate", "better", "pick_device",
    "save", "main",
})


def unsupported(plan: dict) -> str | None:
    """Why this writer cannot write the plan out yet (None: it can)."""
    data = plan["data"]
    source = data["source"]
    if source not in SOURCES:
        return f"the {source} data source"
    if data.get("pairs"):
        return "siamese pairs"
    known = set(DATA_OPTIONS)
    if source == "tensors":
        known |= set(data)  # every other keyword is a field
    elif source == "synthetic":
        known |= {"n", "n_test", "shape", "num_classes", "target_shape", "task", "x_dtype"}
    extra = sorted(set(data) - known)
    if extra:
        return f"the data option {extra[0]}"
    for name, _ in data.get("transforms") or ():
        if name not in ("ToTensor", "Normalize") or source not in TV_SOURCES:
            return f"the {name} transform"
    if source == "synthetic" and _synthetic_targets(data) is None:
        return "synthetic targets laid out per position"
    if source == "tensors" and _tensor_fields(data) is None:
        return "inline labels it must check or map (strings, negative values, rows)"
    for key, what in (("distributed", "several processes"), ("freeze", "frozen parameters"),
                      ("deterministic", "deterministic kernels")):
        if plan.get(key):
            return what
    if plan["optimizer"].get("groups"):
        return "parameter groups"
    if plan.get("accumulate", 1) != 1:
        return "gradient accumulation"
    if plan.get("precision", "fp32") != "fp32":
        return f"{plan['precision']} precision"
    ck = plan.get("checkpoint") or {}
    if ck.get("every_steps") or ck.get("every_minutes"):
        return "checkpoints in the middle of an epoch"
    es = plan.get("early_stopping") or {}
    if es.get("restore_best"):
        return "restoring the best weights"
    for term in plan["losses"]:
        if term.get("dense") or term.get("numel") is None:
            return "dense labels"
        if set(term.get("metrics", ())) - set(METRICS):
            return f"the metric {sorted(set(term['metrics']) - set(METRICS))[0]}"
        if term["target"] == "class" and "ignore_index" in term["kwargs"]:
            return "ignore_index"
        if any(term["kwargs"].get(t) is not None for t in term.get("tensors", ())):
            return "loss arguments that are tensors"
    return None


# ---- the data ----------------------------------------------------------------------------
def _depth(v) -> int:
    return 1 + _depth(v[0]) if isinstance(v, list | tuple) and v else int(isinstance(v, list | tuple))


def _flat(v):
    if isinstance(v, list | tuple):
        for x in v:
            yield from _flat(x)
    else:
        yield v


def _array(v) -> str:
    """A nested list of numbers as Python source."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_array(x) for x in v) + "]"
    return literal(v)


def _tensor_fields(data: dict) -> dict | None:
    """Per field of inline data, (its kind, the torch source that makes it), or None when
    the runtime would map its labels (strings) or could ignore some (negative labels)."""
    uses = data.get("fields") or {}
    out = {}
    for key, v in data.items():
        if key in DATA_OPTIONS:
            continue
        name = key[: -len("_test")] if key.endswith("_test") else key
        kind = (uses.get(name) or {}).get("kind")
        if kind is None:
            return None  # the runtime infers it from the values: not written out yet
        values = list(_flat(v))
        if kind == "class":
            if any(isinstance(x, str) or (x < 0) for x in values) or \
                    any(isinstance(x, float) and x != int(x) for x in values):
                return None
            depth = _depth(v)
            if depth > 2 or depth == 2 and any(len(row) != 1 for row in v):
                return None  # the runtime refuses them, with its message
            code = f"torch.tensor({_array(v)}, dtype=torch.int64)"
            if depth == 2:
                code += "[:, 0]"
        elif kind == "values":
            code = f"torch.tensor({_array(v)}, dtype=torch.float32)"
            if _depth(v) == 1:
                code += ".unsqueeze(1)"
        else:
            dtype = (uses.get(name) or {}).get("dtype") or data.get("x_dtype") or "float32"
            code = f"torch.tensor({_array(v)}, dtype=torch.{dtype})"
        out[key] = (kind, code)
    return out


def _synthetic_fields(data: dict) -> dict:
    """What each field of synthetic data is, as the runtime reads `shape=` (one input `x`,
    one target `y`) or the plan's fields."""
    if data.get("shape") is None:
        return data.get("fields") or {}
    shape = data["shape"]
    shape = [shape] if isinstance(shape, int) else list(shape)
    target = data.get("target_shape")
    classify = data.get("task", "regression" if target is not None else "classification") \
        == "classification"
    target = [] if target is None and classify else [1] if target is None else \
        [target] if isinstance(target, int) else list(target)
    return {"x": {"kind": "input", "shape": shape, "dtype": data.get("x_dtype"),
                  "vocab": data.get("vocab")},
            "y": {"kind": "class" if classify else "values", "shape": target,
                  "classes": data.get("num_classes")}}


def _synthetic_targets(data: dict) -> list | None:
    """Per target field of synthetic data (kind, shape, classes); None when one of them is
    laid out per position of an input (the runtime's per-position teacher)."""
    fields = _synthetic_fields(data)
    inputs = [tuple(u.get("shape") or ()) for u in fields.values() if u.get("kind") == "input"]
    if any((u.get("dtype") or "float32") not in ("float32", "float64") or u.get("vocab")
           for u in fields.values() if u.get("kind") == "input"):
        return None
    out = []
    for name, u in fields.items():
        if u.get("kind") == "input":
            continue
        size = tuple(u.get("shape") or ())
        if size and any(s == size or s[1:] == size or s[:-1] == size for s in inputs):
            return None
        out.append((name, u["kind"], size, u.get("classes")))
    return out if inputs else None


@dataclass
class Writer:
    """The script for one model's plan."""

    plan: dict
    model_class: str
    outputs: list[str]  # the model's outputs, in the order it returns them
    source_name: str

    # ---- pieces ------------------------------------------------------------------------
    @property
    def reads_files(self) -> bool:
        """Whether the script takes --data-root (a dataset on disk)."""
        return self.data["source"] in TV_SOURCES

    @property
    def data(self) -> dict:
        return self.plan["data"]

    @functools.cached_property
    def counted_field(self) -> str:
        """A field every split has, to count samples by."""
        return self.plan["inputs"][0]

    @functools.cached_property
    def locals(self) -> dict[str, dict[str, str]]:
        """A Python name for each model output and batch field that `compute` holds in a
        variable: the name itself, or with `_` added where it would shadow something the
        script uses (a keyword, a builtin, a module, one of its functions)."""
        taken = set(NAMES) | {"loss", "values", "model", "batch"}

        def fresh(py: str) -> str:
            while keyword.iskeyword(py) or py in dir(builtins) or py in taken or \
                    py.endswith(("_loss", "_scores")):
                py += "_"
            taken.add(py)
            return py

        out = {name: fresh(name) for name in self.outputs}
        fields = {}
        for name in dict.fromkeys(t["field"] for t in self.plan["losses"]):
            fields[name] = fresh(f"{name}_true" if name in out else name)  # (an output's name)
        return {"out": out, "field": fields}

    def imports(self) -> set[str]:
        out = {"import argparse", "import hashlib", "import json", "import math", "import os",
               "import sys", "import time", "import torch", "from torch import nn"}
        if self.data["source"] in TV_SOURCES:
            out.add("from torchvision import datasets")
        if self.plan.get("checkpoint"):
            out.add("import zipfile")
        return out

    def load_data(self) -> list[str]:
        d, source = self.data, self.data["source"]
        held = [(k, d[k]) for k in ("test", "val") if d.get(k) is not None]
        what = {"MNIST": "MNIST", "FashionMNIST": "Fashion-MNIST", "CIFAR10": "CIFAR-10",
                "tensors": "The data written in the spec", "synthetic": "Synthetic data"}[source]
        steps = [n if not kw else f"{n}({', '.join(map(literal, kw.values()))})"
                 for n, kw in d.get("transforms") or ()]
        doc = [f"{what} as whole tensors"]
        if steps:
            doc.append(f", {' and '.join(steps)} applied once to each split")
        for key, amount in held:
            part = f"{amount:.0%}" if isinstance(amount, float) else f"{amount}"
            doc.append(f"; {part} of the training samples held out as {key} (seeded)")
        body = ["def load_data(root, seed):" if source in TV_SOURCES else "def load_data(seed):",
                *_docstring("".join(doc) + ".")]
        if source in TV_SOURCES:
            body += self._torchvision()
        elif source == "tensors":
            body += self._tensors()
        else:
            body += self._synthetic()
        if d.get("limit") is not None:
            body.append(f"    for name in data:  # limit={d['limit']}: the first samples only")
            body.append(f"        data[name] = {{k: v[:{int(d['limit'])}] for k, v in data[name].items()}}")
        for key, amount in held:
            body.append(f'    data["train"], data[{literal(key)}] = hold_out(data["train"], {literal(amount)}, seed, {literal(key)})')
        body.append("    return data")
        return body

    def _torchvision(self) -> list[str]:
        d, source = self.data, self.data["source"]
        cifar = source == "CIFAR10"
        lines = ["    data = {}",
                 '    for split, train in (("train", True), ("test", False)):',
                 f"        ds = datasets.{source}(root, train=train, download={literal(bool(d.get('download')))})"]
        if cifar:
            lines += ["        image = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()",
                      "        label = torch.tensor(ds.targets, dtype=torch.int64)"]
        else:
            lines += ["        image, label = ds.data.unsqueeze(1), ds.targets  # (N, 1, H, W) uint8"]
        for name, kw in d.get("transforms") or ():
            if name == "ToTensor":
                lines.append("        image = image.float() / 255  # ToTensor: values in [0, 1]")
            else:
                mean, std = kw["mean"], kw["std"]
                if isinstance(mean, list | tuple) or isinstance(std, list | tuple):
                    m = f"torch.tensor({literal(list(mean) if isinstance(mean, list | tuple) else [mean])}).view(1, -1, 1, 1)"
                    s = f"torch.tensor({literal(list(std) if isinstance(std, list | tuple) else [std])}).view(1, -1, 1, 1)"
                    lines.append(f"        image = (image - {m}) / {s}  # Normalize, per channel")
                else:
                    lines.append(f"        image = (image - {literal(mean)}) / {literal(std)}  # Normalize")
        lines.append('        data[split] = {"image": image, "label": label}')
        return lines

    def _tensors(self) -> list[str]:
        fields = _tensor_fields(self.data)
        train = {k: c for k, (_, c) in fields.items() if not k.endswith("_test")}
        test = {k[: -len("_test")]: c for k, (_, c) in fields.items() if k.endswith("_test")}
        lines = ['    data = {"train": {}}']
        for k, code in train.items():
            lines.append(f'    data["train"][{literal(k)}] = {code}')
        if test:
            lines.append('    data["test"] = {}')
            for k, code in test.items():
                lines.append(f'    data["test"][{literal(k)}] = {code}')
        return lines

    def _synthetic(self) -> list[str]:
        d = self.data
        n, n_test = int(d.get("n", 512)), int(d.get("n_test", 128))
        fields = _synthetic_fields(d)
        inputs = [(k, tuple(u.get("shape") or ()), u.get("dtype") or "float32")
                  for k, u in fields.items() if u.get("kind") == "input"]
        lines = ["    # inputs: seeded noise; targets: a random linear teacher of the inputs",
                 '    g = seeded(seed, "synthetic")',
                 f"    total = {n + n_test}",
                 "    made = {}"]
        for k, shape, dtype in inputs:
            size = "(" + ", ".join(["total", *map(str, shape)]) + ("," if not shape else "") + ")"
            cast = "" if dtype == "float32" else f".to(torch.{dtype})"
            lines.append(f"    made[{literal(k)}] = torch.randn({size}, generator=g){cast}")
        if len(inputs) == 1:
            lines.append(f"    features = made[{literal(inputs[0][0])}].float().reshape(total, -1, 1)")
        else:
            lines.append("    # each input weighs the same, however many values it has")
            lines.append("    parts = [")
            d_all = sum(math.prod(s) for _, s, _ in inputs)
            for k, shape, _ in inputs:
                lines.append(f"        made[{literal(k)}].float().reshape(total, -1, 1)"
                             f" * math.sqrt({d_all} / ({len(inputs)} * {math.prod(shape)})),")
            lines.append("    ]")
            lines.append("    features = torch.cat(parts, 1)")
        lines.append("    d = features.shape[1]")
        for name, kind, size, classes in _synthetic_targets(d):
            positions = math.prod(size)
            shape = ", ".join(["total", *map(str, size)])
            if kind == "class":
                out = int(classes) * positions
                lines += [f"    w = torch.randn((d, {out}), generator=g) / math.sqrt(max(d, 1))",
                          f'    logits = torch.einsum("ndp,dc->ncp", features, w).reshape(total, {int(classes)}, -1)',
                          f"    made[{literal(name)}] = logits.argmax(1).reshape({shape})"]
            else:
                out = max(positions, 1)
                lines += [f"    w = torch.randn((d, {out}), generator=g) / math.sqrt(max(d, 1))",
                          '    y = torch.einsum("ndp,dc->ncp", features, w).reshape(total, -1)',
                          "    y = y + 0.01 * torch.randn(y.shape, generator=g)",
                          f"    made[{literal(name)}] = y.reshape({shape})"]
        lines.append(f'    data = {{"train": {{k: v[:{n}] for k, v in made.items()}}}}')
        if n_test:
            lines.append(f'    data["test"] = {{k: v[{n}:] for k, v in made.items()}}')
        return lines

    # ---- the step ------------------------------------------------------------------------
    @functools.cached_property
    def loss_objects(self) -> tuple[list[str], list[tuple[str, str, dict]]]:
        """(per loss term, the script's name of its loss object; the objects, each once, as
        (name, torch class, kwargs)). Terms of one class and kwargs share one object."""
        made: dict[tuple, tuple[str, str, dict]] = {}
        taken = {*NAMES, *self.locals["out"].values(), *self.locals["field"].values()}
        per_term = []
        for term in self.plan["losses"]:
            key = (term["name"], repr(sorted(term["kwargs"].items())))
            if key not in made:
                base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_",
                              term["name"].removesuffix("Loss")).lower()
                name, i = base, 2
                while name in taken:
                    name, i = f"{base}_{i}", i + 1
                taken.add(name)
                made[key] = (name, term["name"], dict(term["kwargs"]))
            per_term.append(made[key][0])
        return per_term, list(made.values())

    def columns(self) -> list[tuple[int, str, str]]:
        """(term index, column name, the expression of its per-batch value) in order."""
        out = []
        for i, term in enumerate(self.plan["losses"]):
            o, t = self._scores(i), self._target(i)
            out.append((i, "loss", f"{self._loss_var(i)}.detach()"))
            for m in term.get("metrics", ()):
                if m == "accuracy" and term["target"] == "class":
                    out.append((i, m, f"({o}.argmax(1) == {t}).sum()"))
                elif m == "accuracy":
                    thr = "0.5" if term["name"] == "BCELoss" else "0"
                    out.append((i, m, f"(({o} > {thr}) == ({t} > 0.5)).sum()"))
                elif m == "top5":
                    k = min(5, int(term["numel"]))
                    out.append((i, m, f"({o}.topk({k}, 1).indices == {t}.unsqueeze(1)).any(1).sum()"))
                elif m == "mae":
                    out.append((i, m, f"({o}.float() - {t}).abs().sum()"))
                elif m == "rmse":
                    out.append((i, m, f"({o}.float() - {t}).square().sum()"))
        return out

    def _output_var(self, i: int) -> str:
        return self.locals["out"][self.outputs[self.plan["losses"][i]["output"]]]

    def _scores(self, i: int) -> str:
        term = self.plan["losses"][i]
        return self._output_var(i) + ("_scores" if term.get("classes_last") else "")

    def _target(self, i: int) -> str:
        term = self.plan["losses"][i]
        if term["target"] == "binary":
            return f"{self.locals['field'][term['field']]}_{self._output_var(i)}"
        return self.locals["field"][term["field"]]

    def _loss_var(self, i: int) -> str:
        """The variable of term i's loss: `loss` for a lone unweighted term (it is the
        total), else `<output>_loss`, which its metrics read unweighted."""
        terms = self.plan["losses"]
        alone = len(terms) == 1 and float(terms[0]["weight"]) == 1.0
        return "loss" if alone else f"{self._output_var(i)}_loss"

    def _column_names(self) -> list[str]:
        """What each of `values`' rows holds, for comments and docstrings."""
        one = len(self.plan["losses"]) == 1
        return [name if one else f"{self._output_var(i)} {name}" for i, name, _ in self.columns()]

    def compute(self) -> list[str]:
        p = self.plan
        terms = p["losses"]
        cols = self.columns()
        lines = ["def compute(model, batch):",
                 *_docstring("One batch: its loss, and the values the metrics sum "
                             f"({', '.join(self._column_names())}).")]
        args = ", ".join(f"batch[{literal(k)}]" for k in p["inputs"])
        used = {self.plan["losses"][i]["output"] for i in range(len(terms))}
        if len(self.outputs) == 1:
            lines.append(f"    {self.locals['out'][self.outputs[0]]} = model({args})")
        else:
            outs = ", ".join(self.locals["out"][o] if j in used else "_" for j, o in enumerate(self.outputs))
            lines.append(f"    {outs} = model({args})")
        fields = dict.fromkeys(t["field"] for t in terms)
        for f in fields:
            lines.append(f"    {self.locals['field'][f]} = batch[{literal(f)}]")
        objects = self.loss_objects[0]
        for i, term in enumerate(terms):
            o = self._output_var(i)
            if term.get("classes_last"):
                lines.append(f"    {o}_scores = {o}.movedim(-1, 1)  # classes last: torch reads them in dim 1")
            if term["target"] == "binary":
                lines.append(f"    {self._target(i)} = {self.locals['field'][term['field']]}.to({o}.dtype).view({o}.shape)")
            lines.append(f"    {self._loss_var(i)} = {objects[i]}({self._scores(i)}, {self._target(i)})")
        if self._loss_var(0) != "loss":  # the terms, weighted (their metrics are not)
            parts = [f"{self._loss_var(i)}" if float(t["weight"]) == 1.0
                     else f"{literal(float(t['weight']))} * {self._loss_var(i)}"
                     for i, t in enumerate(terms)]
            lines.append(f"    loss = {' + '.join(parts)}")
        metric_cols = [c for c in cols if c[1] != "loss"]
        values = ", ".join(c[2] for c in cols)
        if metric_cols:
            lines.append("    with torch.no_grad():")
            lines.append(f"        values = torch.stack([{values}])")
        else:
            lines.append(f"    values = torch.stack([{values}])")
        lines.append("    return loss, values")
        return lines

    def loss_rows(self) -> list[int]:
        """The rows of `values` that hold a batch mean (weighted by the batch's samples when
        an epoch sums them)."""
        terms = self.plan["losses"]
        return [j for j, (i, name, _) in enumerate(self.columns())
                if name == "loss" and terms[i]["kwargs"].get("reduction", "mean") in ("mean", "batchmean")]

    def metrics(self) -> list[str]:
        terms = self.plan["losses"]
        cols = self.columns()
        lines = ["def metrics(split, sums, n):",
                 '    """The per-sample means of a split from its sums over `n` samples."""']
        var = [f"{self._output_var(i)}_{name}_sum" if len(terms) > 1 else f"{name}_sum"
               for i, name, _ in cols]
        lines.append(f"    {', '.join(var)}{',' if len(var) == 1 else ''} = sums")
        means, entries = {}, {}
        for (i, name, _), v in zip(cols, var, strict=True):
            term = terms[i]
            numel = int(term["numel"])
            if name == "loss":
                means[i] = f"{v} / n"
            elif name in ("accuracy", "top5") and term["target"] == "class":
                entries[i, name] = f"{v} / n"
            elif name == "rmse":
                entries[i, name] = f"math.sqrt({v} / {'n' if numel == 1 else f'(n * {numel})'})"
            else:
                entries[i, name] = f"{v} / {'n' if numel == 1 else f'(n * {numel})'}"
        for i, term in enumerate(terms):
            if "perplexity" in term.get("metrics", ()):
                lines.append(f"    {self._mean_var(i)} = {means[i]}")
                means[i] = self._mean_var(i)
                entries[i, "perplexity"] = f"math.exp(min({means[i]}, 700.0))"
        total = " + ".join(
            f"{means[i]}" if float(t["weight"]) == 1.0 else f"{literal(float(t['weight']))} * ({means[i]})"
            for i, t in enumerate(terms))
        lines.append("    return {")
        lines.append(f'        f"{{split}}.loss": {total},')
        for i, term in enumerate(terms):
            prefix = term.get("prefix", "")
            if prefix:
                lines.append(f'        f"{{split}}.{prefix}loss": {means[i]},')
            for m in term.get("metrics", ()):
                lines.append(f'        f"{{split}}.{prefix}{m}": {entries[i, m]},')
        lines.append("    }")
        return lines

    def _mean_var(self, i: int) -> str:
        return "mean_loss" if len(self.plan["losses"]) == 1 else f"{self._output_var(i)}_mean_loss"

    # ---- the file ------------------------------------------------------------------------
    def module(self, header: str, classes: list[ClassDef]) -> str:
        imports = self.imports() | set().union(*(c.imports for c in classes))
        parts = [header.rstrip() + "\n\n", "from __future__ import annotations\n\n",
                 sorted_imports(imports), "\n\n",
                 "\n\n".join(class_source(c) for c in classes), "\n\n"]
        body = self.body()
        return "".join(parts) + _tidy(body)

    def body(self) -> str:
        p = self.plan
        out: list[str] = []

        def block(*lines: str) -> None:
            out.append("\n".join(lines))

        block(_rule("the data"))
        block(*SEEDED)
        block(*self.load_data())
        if any(self.data.get(k) is not None for k in ("val", "test")):
            block(*HOLD_OUT)
        block(*_batches(bool(p.get("drop_last"))))
        block(_rule("the step"))
        block(*[f"{name} = nn.{cls}({', '.join(f'{k}={literal(v)}' for k, v in kw.items())})"
                for name, cls, kw in self.loss_objects[1]])
        block(*self.compute())
        block(*self.metrics())
        block(*self.train_one_epoch())
        block(*self.evaluate())
        block(_rule("the run"))
        block(*DIVERGED)
        if p.get("early_stopping") or p.get("monitor") or p.get("checkpoint"):
            block(*BETTER)
        block(*PICK_DEVICE)
        block(*SAVE)
        block(*self.main())
        block('if __name__ == "__main__":', "    sys.exit(main())")
        return "\n\n\n".join(out) + "\n"

    def train_one_epoch(self) -> list[str]:
        p = self.plan
        cols = self.columns()
        shuffle = p.get("shuffle", True)
        sched = p.get("scheduler") or {}
        step_sched = sched.get("interval") == "step"
        clip_n, clip_v = p.get("clip_grad_norm"), p.get("clip_grad_value")
        warmup = int(p.get("warmup") or 0)
        first = self.counted_field
        args = "model, train, optimizer" + (", scheduler" if step_sched else "") + ", epoch, args, done"
        lines = [f"def train_one_epoch({args}):",
                 '    """One pass over the training data (in a seeded order); the epoch\'s metrics.',
                 "    `done`: optimizer steps before this epoch. Raises Diverged when the loss becomes",
                 '    nan or inf."""',
                 "    model.train()",
                 f"    n = len(train[{literal(first)}])"]
        bs = int(p["batch_size"])
        if p.get("drop_last"):
            lines.append(f"    steps = n // {bs}")
            lines.append(f"    samples = steps * {bs}")
        else:
            lines.append(f"    steps = math.ceil(n / {bs})")
        if shuffle:
            lines.append('    order = torch.randperm(n, generator=seeded(args.seed, "order", epoch))')
            lines.append("    order = order.to(args.device)")
        lines.append("    # per step: " + ", ".join(self._column_names())
                     + "\n    # (summed once, at the end of the epoch: the loop never waits for the device)")
        lines.append(f"    stats = torch.zeros({len(cols)}, steps, dtype=torch.float64, device=args.device)")
        lines.append("    sizes = torch.zeros(steps, dtype=torch.float64, device=args.device)")
        it = f"batches(train, {bs}, order)" if shuffle else f"batches(train, {bs})"
        lines.append(f"    for step, batch in enumerate({it}):")
        lines.append("        loss, values = compute(model, batch)")
        lines.append("        loss.backward()")
        if clip_n:
            lines.append(f"        torch.nn.utils.clip_grad_norm_(model.parameters(), {literal(clip_n)})")
        if clip_v:
            lines.append(f"        torch.nn.utils.clip_grad_value_(model.parameters(), {literal(clip_v)})")
        if warmup:
            lines += [f"        if done + step < {warmup}:  # linear warmup: this step's lr scaled, then restored",
                      f"            factor = (done + step + 1) / {warmup}",
                      '            lrs = [group["lr"] for group in optimizer.param_groups]',
                      "            for group in optimizer.param_groups:",
                      '                group["lr"] = group["lr"] * factor',
                      "            optimizer.step()",
                      "            for group, lr in zip(optimizer.param_groups, lrs):",
                      '                group["lr"] = lr',
                      "        else:",
                      "            optimizer.step()"]
        else:
            lines.append("        optimizer.step()")
        lines.append("        optimizer.zero_grad(set_to_none=True)")
        if step_sched:
            lines.append("        scheduler.step()")
        lines.append("        stats[:, step] = values")
        lines.append(f"        sizes[step] = len(batch[{literal(first)}])")
        rows = self.loss_rows()
        losses = [j for j, c in enumerate(cols) if c[1] == "loss"]
        lines += [f"        if (step + 1) % {CHECK_EVERY} == 0 or step + 1 == steps:",
                  f"            check(stats{_rows(losses)}, step + 1, steps, epoch, optimizer)"]
        if rows:
            lines.append(f"    stats{_rows(rows)} *= sizes  # batch means to sums")
        lines.append("    sums = stats.sum(1).tolist()")
        lines.append('    record = {"epoch": epoch + 1, "step": done + steps, "lr": optimizer.param_groups[0]["lr"]}')
        lines.append(f'    record.update(metrics("train", sums, {"samples" if p.get("drop_last") else "n"}))')
        lines.append("    return record")
        return lines

    def evaluate(self) -> list[str]:
        p = self.plan
        cols = self.columns()
        rows = self.loss_rows()
        bs = int(p.get("eval_batch_size") or p["batch_size"])
        lines = ["@torch.inference_mode()",
                 "def evaluate(model, split, name, device):",
                 '    """The metrics of one split (`name`: its prefix), computed as training does."""',
                 "    model.eval()",
                 f"    sums = torch.zeros({len(cols)}, dtype=torch.float64, device=device)",
                 f"    for batch in batches(split, {bs}):",
                 "        _, values = compute(model, batch)",
                 "        values = values.double()"]
        if rows:
            lines.append(f"        values{_rows(rows)} *= len(batch[{literal(self.counted_field)}])  # batch means to sums")
        lines += ["        sums += values",
                  "    model.train()",
                  f"    return metrics(name, sums.tolist(), len(split[{literal(self.counted_field)}]))"]
        return lines

    def main(self) -> list[str]:
        p = self.plan
        data = p["data"]
        tv = data["source"] in TV_SOURCES
        sched = p.get("scheduler")
        es = p.get("early_stopping")
        ck = p.get("checkpoint")
        monitor = ck or p.get("monitor")
        val = data.get("val") is not None
        test = data["source"] in TV_SOURCES or data.get("test") is not None or (
            data["source"] == "synthetic" and int(data.get("n_test", 128)) > 0) or (
            data["source"] == "tensors" and any(k.endswith("_test") for k in data))
        model = self.plan["model"]
        L = [
            "def main(argv=None):",
            f'    """Train {doc_text(model)} and evaluate it on the test split, as `netdsl run` does."""',
            "    parser = argparse.ArgumentParser(",
            "        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter",
            "    )",
            "    add = parser.add_argument",
            f'    add("--epochs", type=int, default={int(p["epochs"])}, help="passes over the training data")',
            f'    add("--device", default={literal(str(p["device"]))}, help="auto, cpu, cuda, cuda:N or mps")',
            *([f'    add("--data-root", default={literal(str(data.get("root") or "data"))}, help="where the dataset lives")'] if tv else []),
            f'    add("--seed", type=int, default={int(p["seed"])}, help="weights, shuffling and splits")',
            f'    add("--out", default={literal("runs/" + model)}, help="folder for weights.pt{" and checkpoints/" if ck else ""}")',
            *(['    add("--resume", help="a checkpoint to continue from, e.g. OUT/checkpoints/last.pt")'] if ck else []),
            '    add("--json", action="store_true", help="print the result as JSON (progress on stderr)")',
            "    args = parser.parse_args(argv)",
            '    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun',
            "        sys.exit(",
            '            "error: this script trains in one process; for torchrun, add "',
            '            "`distributed = Distributed()` to the plan and compile it again"',
            "        )",
            "    log = sys.stderr if args.json else sys.stdout",
            "    args.device = pick_device(args.device)",
            "    try:",
            f"        data = load_data({'args.data_root, ' if tv else ''}args.seed)",
            "    except (OSError, RuntimeError) as exc:  # not there, and no download",
            '        sys.exit(f"error: {exc}")',
            "    for name, split in data.items():  # moved once; batches are slices of it",
            "        data[name] = {k: v.to(args.device) for k, v in split.items()}",
            "",
            "    torch.manual_seed(args.seed)  # the initial weights, and dropout's draws",
            f"    model = {self.model_class}().to(args.device)",
            "    n = sum(p.numel() for p in model.parameters())",
            f'    sizes = ", ".join(f"{{k}} {{len(v[{literal(self.counted_field).replace(chr(34), chr(39))}])}}" for k, v in data.items())',
            f'    print(f"training {doc_text(model)} ({{n:,}} parameters) on {{args.device}}: {{sizes}} samples", file=log)',
        ]
        for name, _, kw in self.loss_objects[1]:
            if any(k in ("weight", "pos_weight") for k in kw):
                L.append(f"    {name}.to(args.device)")
        opt = p["optimizer"]
        kw = ", ".join(f"{k}={literal(v)}" for k, v in opt["kwargs"].items())
        L.append(f"    optimizer = torch.optim.{opt['name']}(model.parameters(){', ' + kw if kw else ''})")
        bs = int(p["batch_size"])
        if sched:
            skw = dict(sched["kwargs"])
            lr = opt["kwargs"].get("lr")
            args = []
            for k, v in skw.items():
                what = sched.get("infer", {}).get(k)
                if v is None and what == "total":
                    if sched["interval"] == "step":
                        n = f'len(data["train"][{literal(self.counted_field)}])'
                        steps = f"({n} // {bs})" if p.get("drop_last") else f"math.ceil({n} / {bs})"
                        args.append(f"{k}=args.epochs * {steps}")
                    else:
                        args.append(f"{k}=args.epochs")
                elif v is None and what == "lr":
                    args.append(f"{k}={literal(lr)}" if lr is not None else f'{k}=optimizer.param_groups[0]["lr"]')
                else:
                    args.append(f"{k}={literal(v)}")
            L.append(f"    scheduler = torch.optim.lr_scheduler.{sched['name']}(optimizer{', ' if args else ''}{', '.join(args)})")
        L += ['    history, best, status, message, done = [], None, "completed", "", 0']
        if es:
            L.append('    early = {"best": None, "bad_epochs": 0}  # ' + f"early stopping on {es['monitor']}")
        if ck:
            L.append('    checkpoints = os.path.join(args.out, "checkpoints")')
        if ck:
            L += ["    if args.resume:  # continue a run from one of its checkpoints",
                  "        try:",
                  "            with zipfile.ZipFile(args.resume) as archive:  # torch.load checks no CRC",
                  "                damaged = archive.testzip()",
                  "            state = torch.load(args.resume, map_location=args.device, weights_only=True)",
                  "        except (OSError, RuntimeError, zipfile.BadZipFile) as exc:",
                  '            sys.exit(f"error: {args.resume} cannot be read: {exc}")',
                  "        if damaged:",
                  '            sys.exit(f"error: {args.resume} is damaged: its entry {damaged}")',
                  '        model.load_state_dict(state["model"])',
                  '        optimizer.load_state_dict(state["optimizer"])']
            if sched:
                L.append('        scheduler.load_state_dict(state["scheduler"])')
            L += ['        history, best = state["history"], state["best"]']
            if es:
                L.append('        early = state["early"]')
            L += ['        torch.set_rng_state(state["rng"].cpu())']
        step_sched = (sched or {}).get("interval") == "step"
        call = "model, data[\"train\"], optimizer" + (", scheduler" if step_sched else "") + \
            ", epoch, args, done"
        L += ["",
              "    start = time.perf_counter()",
              "    for epoch in range(len(history), args.epochs):",
              '        done = history[-1]["step"] if history else 0  # optimizer steps so far',
              "        t0 = time.perf_counter()",
              "        try:",
              f"            record = train_one_epoch({call})",
              "        except Diverged as exc:",
              '            status, message = "diverged", str(exc)',
              "            done += exc.steps",
              "            break"]
        if val:
            L.append('        record.update(evaluate(model, data["val"], "val", args.device))')
        L += ['        record["seconds"] = round(time.perf_counter() - t0, 3)',
              "        history.append(record)"]
        if sched and not step_sched:
            if sched["name"] == "ReduceLROnPlateau":
                L.append(f"        scheduler.step(record[{literal(sched['monitor'])}])")
            else:
                L.append("        scheduler.step()")
        L.append("        stop = False")
        if es:
            m = literal(es["monitor"])
            delta = float(es.get("min_delta") or 0.0)
            L += [f"        if better(record[{m}], early[\"best\"], {literal(es['mode'])}{', ' + literal(delta) if delta else ''}):",
                  f'            early = {{"best": record[{m}], "bad_epochs": 0, "epoch": epoch + 1}}',
                  "        else:",
                  '            early["bad_epochs"] += 1',
                  f'            if early["bad_epochs"] > {int(es["patience"])}:',
                  '                stop, status = True, "early_stopped"',
                  "                message = (",
                  f'                    f"early stopping: {es["monitor"]} has not improved for "',
                  "                    f\"{early['bad_epochs']} epochs (best {early['best']:.4g} at \"",
                  "                    f\"epoch {early.get('epoch')})\"",
                  "                )"]
        if monitor:
            m = literal(monitor["monitor"])
            L += [f"        improved = better(record[{m}], best and best[\"value\"], {literal(monitor['mode'])})",
                  "        if improved:",
                  f'            best = {{"epoch": epoch + 1, "monitor": {m}, "value": record[{m}]}}']
        if ck:
            every = int(ck.get("every") or 1)
            when = "stop or epoch + 1 == args.epochs" if every == 1 else \
                f"(epoch + 1) % {every} == 0 or epoch + 1 == args.epochs or stop"
            state = ['"model": model.state_dict()', '"optimizer": optimizer.state_dict()']
            if sched:
                state.append('"scheduler": scheduler.state_dict()')
            state += ['"rng": torch.get_rng_state()', '"history": history', '"best": best']
            if es:
                state.append('"early": early')
            L.append("        state = {" + ", ".join(state) + "}")
            if every == 1:
                L.append('        save(state, checkpoints, "last.pt")')
            else:
                L.append(f"        if {when}:")
                L.append('            save(state, checkpoints, "last.pt")')
            if ck["keep"] == "all":
                ind = "        " if every == 1 else "            "
                L.append(f'{ind}save(state, checkpoints, f"epoch_{{epoch + 1:03d}}.pt")')
            if ck["keep"] in ("best", "all"):
                L += ["        if improved:",
                      '            save(state, checkpoints, "best.pt")']
        L += ["        # a line per epoch; at most about 20 in a long run",
              "        stride = math.ceil(args.epochs / 20) if args.epochs > 30 else 1",
              "        if (epoch + 1) % stride == 0 or epoch in (0, args.epochs - 1):"]
        L += ['            shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if "." in k)',
              "            print(f\"epoch {epoch + 1}/{args.epochs}  {shown}  lr {record['lr']:.3g}\", file=log)"]
        L += [
              "        if stop:",
              "            break",
              "",
              "    test = None",
              '    if status != "diverged":']
        if test:
            L.append('        test = evaluate(model, data["test"], "test", args.device)')
        L += ["        os.makedirs(args.out, exist_ok=True)",
              '        torch.save(model.state_dict(), os.path.join(args.out, "weights.pt"))',
              "    result = {",
              '        "status": status,',
              '        "message": message,',
              '        "epochs": len(history),',
              '        "steps": done if status == "diverged" or not history else history[-1]["step"],',
              '        "seconds": round(time.perf_counter() - start, 3),',
              '        "final": history[-1] if history else None,',
              '        "best": best,',
              '        "test": test,',
              '        "history": history,',
              "    }",
              "    if args.json:",
              "        print(json.dumps(result, indent=2))",
              "    else:",
              "        if message:",
              "            print(message)",
              "        if test:",
              '            print("  ".join(f"{k} {v:.4f}" for k, v in test.items()))',
              "        if best:",
              "            print(f\"best {best['monitor']} {best['value']:.4f} at epoch {best['epoch']}\")",
              '    return 1 if status == "diverged" else 0']
        return L


def _rows(rows: list[int]) -> str:
    """The index that picks these rows of a tensor: `[0]`, or `[[0, 2]]` for several."""
    return f"[{rows[0]}]" if len(rows) == 1 else f"[{rows}]"


def _docstring(text: str, indent: int = 4) -> list[str]:
    """A docstring of plain text, wrapped to ruff's 88 columns."""
    import textwrap

    pad = " " * indent
    lines = textwrap.wrap(doc_text(text), 88 - indent - 3)
    if len(lines) == 1 and len(lines[0]) + indent + 6 <= 88:
        return [f'{pad}"""{lines[0]}"""']
    lines = textwrap.wrap(doc_text(text), 88 - indent - 3, initial_indent='"""')
    return [pad + line for line in lines[:-1]] + [f'{pad}{lines[-1]}"""']


def _rule(what: str) -> str:
    return (f"# ---- {what} " + "-" * 88)[:88]


SEEDED = [
    "def seeded(seed, *tags):",
    '    """A generator for one kind of draw (an epoch\'s order, a held-out split), seeded',
    '    from the run\'s seed and the tags as netdsl seeds it: runs match `netdsl run`."""',
    "    digest = hashlib.blake2b(repr((int(seed), *tags)).encode(), digest_size=8).digest()",
    '    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))',
]

HOLD_OUT = [
    "def hold_out(split, amount, seed, tag):",
    '    """(rest, held): `amount` of the samples (a fraction, or a count) drawn at random',
    '    (seeded) and held out; both keep the samples\' order."""',
    "    n = len(next(iter(split.values())))",
    "    k = max(1, round(amount * n)) if isinstance(amount, float) else amount",
    "    perm = torch.randperm(n, generator=seeded(seed, tag))",
    "    held, rest = perm[:k].sort().values, perm[k:].sort().values",
    "    return {f: v[rest] for f, v in split.items()}, {f: v[held] for f, v in split.items()}",
]

def _batches(drop_last: bool) -> list[str]:
    """batches(): slices of a split, in an order or as stored; with drop_last, a smaller last
    batch is left out in training (where an order is given)."""
    doc = ['    """The split\'s batches (dicts of tensors), in `order` or as stored."""']
    end = "n"
    if drop_last:
        doc = ['    """The split\'s batches (dicts of tensors), in `order` or as stored; a last batch',
               '    smaller than the others is dropped in training (`order` given)."""']
        end = "end"
    return [
        "def batches(split, batch_size, order=None):",
        *doc,
        "    n = len(next(iter(split.values())))",
        *(["    end = n - n % batch_size if order is not None else n"] if drop_last else []),
        f"    for lo in range(0, {end}, batch_size):",
        "        if order is None:",
        "            yield {k: v[lo : lo + batch_size] for k, v in split.items()}",
        "        else:",
        "            rows = order[lo : lo + batch_size]",
        "            yield {k: v[rows] for k, v in split.items()}",
    ]


DIVERGED = [
    "class Diverged(Exception):",
    '    """The loss became nan or inf; `steps`: optimizer steps taken in all."""',
    "",
    "    def __init__(self, message, steps):",
    "        super().__init__(message)",
    "        self.steps = steps",
    "",
    "",
    "def check(losses, upto, steps, epoch, optimizer):",
    '    """Raise Diverged when a loss of the epoch\'s first `upto` steps is not finite."""',
    "    total = losses[..., :upto].sum().item()",
    "    if math.isfinite(total):",
    "        return",
    "    bad = ~torch.isfinite(losses[..., :upto]).reshape(-1, upto).all(0)",
    "    first = int(bad.nonzero()[0, 0]) if bool(bad.any()) else upto - 1",
    '    what = "nan" if math.isnan(total) else "inf"',
    '    lr = optimizer.param_groups[0]["lr"]',
    '    where = f"at epoch {epoch + 1}, step {first + 1} of {steps} (lr {lr:.3g})"',
    '    raise Diverged(f"the loss became {what} {where}", upto)',
]

BETTER = [
    "def better(value, best, mode, min_delta=0.0):",
    '    """Whether `value` improves on `best` (None: nothing yet, any finite value does)."""',
    "    if best is None:",
    "        return math.isfinite(value)",
    '    return value < best - min_delta if mode == "min" else value > best + min_delta',
]

PICK_DEVICE = [
    "def pick_device(name):",
    '    """`auto`: cuda if there is one, else mps if there is one, else the CPU."""',
    '    if name != "auto":',
    "        return torch.device(name)",
    "    if torch.cuda.is_available():",
    '        return torch.device("cuda")',
    "    if torch.backends.mps.is_available():",
    '        return torch.device("mps")',
    '    return torch.device("cpu")',
]

SAVE = [
    "def save(state, folder, name):",
    '    """torch.save to folder/name through a temporary file: a crash or a full disk never',
    '    leaves a half-written file (the one from before stays)."""',
    "    os.makedirs(folder, exist_ok=True)",
    '    path, tmp = os.path.join(folder, name), os.path.join(folder, f".{name}.tmp")',
    "    try:",
    "        torch.save(state, tmp)",
    "        os.replace(tmp, path)",
    "    except (OSError, RuntimeError) as exc:  # torch's zip writer: a RuntimeError",
    "        if os.path.exists(tmp):",
    "            os.remove(tmp)",
    '        full = getattr(exc, "errno", None) == 28 or "write failed" in str(exc)',
    '        sys.exit(f"error: {\'no space left on the device\' if full else exc} to write {path}")',
]


def _tidy(text: str) -> str:
    """Lines longer than ruff's 88 columns, laid out as `ruff format` would."""
    out = []
    for line in text.split("\n"):
        if len(line) <= 88:
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        try:
            ast.parse(line.strip())
        except SyntaxError:  # a docstring's or a compound statement's line: kept short here
            out.append(line)
            continue
        out.extend(format_statement(line.strip(), indent))
    return "\n".join(out)


def script_names() -> frozenset:
    """Every top-level name a compiled training script defines or imports (either kind)."""
    from .inlined import script_names as inlined_names

    return NAMES | inlined_names()


def training_script(spec, names: list[str], classes: list[ClassDef], required: bool):
    """The script for the models among `names` that have a plan (E401 when `required` and
    none does); None when none does. One model whose plan this writer covers gets a script
    of its own; anything else the generic runtime inlined (targets/inlined.py)."""
    from .inlined import training_script as inlined

    trained = [n for n in names if n in spec.trains]
    if not trained:
        if required:
            spec.plan(names[0])  # raises E401 with the spec's own hint
        return None
    if len(trained) == 1:
        plan = spec.plan(trained[0]).settings()
        why = unsupported(plan)
        if why is None:
            cls = next(c.name for c in classes if c.model == trained[0])
            outputs = [o.name for o in spec.graph(trained[0]).outputs]
            return Writer(plan, cls, outputs, Path(spec.filename).name)
    else:
        why = "several models with training plans"
    script = inlined(spec, names, classes, required)
    script.reason = why
    return script


__all__ = ["training_script", "script_names", "unsupported", "Writer"]
