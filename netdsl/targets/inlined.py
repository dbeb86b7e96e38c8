"""The training half of a compiled file: `python model.py` trains as `netdsl run` does.

`netdsl run` is: the resolved plan (runtime/plan.py `Plan.settings()`, plain values), the data
(runtime/data.py `load_data`) and the loop (runtime/loop.py `fit`). The last two are
standalone modules, importing only torch, torchvision and the standard library, so a compiled
file holds them as they are: their imports go to the top of the file, their code follows the
model classes unchanged. Then the plan as a literal `PLAN` dict, and a `main()` with argparse
for the epochs, the device, the data root, the seed and where to write checkpoints. The same
seed gives the same initial weights, batches and metrics as `netdsl run`.

The generated file must be `ruff format`-clean, so the two standalone modules are themselves
kept in the layout `ruff format --isolated` writes (88 columns, unlike the rest of netdsl);
tests/test_compile.py checks that, and the compiler inlines them exactly as they are.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

from .lower import ClassDef, Stmt
from .pyformat import format_literal, format_statement
from .pysource import class_source, comment_text, doc_text, literal, sorted_imports, statements

RUNTIME = Path(__file__).parents[1] / "runtime"
MODULES = ("data", "loop")  # in the order they are written out
GLUE = {"PLAN", "PLANS", "MODELS", "main", "report", "argparse", "copy", "json"}


@dataclass
class Standalone:
    """One standalone runtime module, split for inlining."""

    name: str
    imports: list[str]  # top-level import statements (not `from __future__`)
    body: str  # everything after them, as written (but `__all__`)
    names: set[str]  # what it defines at the top level


def standalone(name: str) -> Standalone:
    imports, body, names = split_module((RUNTIME / f"{name}.py").read_text(encoding="utf-8"))
    return Standalone(name, imports, body, names)


@functools.cache
def script_names() -> frozenset:
    """Every top-level name a compiled training script defines or imports."""
    names = set(GLUE) | {"os", "sys", "torch", "annotations"}
    for m in MODULES:
        part = standalone(m)
        names |= part.names
        for line in part.imports:
            tree = ast.parse(line).body[0]
            names |= {(a.asname or a.name).split(".")[0] for a in tree.names}
    return frozenset(names)


def split_module(text: str) -> tuple[list[str], str, set[str]]:
    """(top-level imports, the code after them, the names it defines). The module's docstring,
    `from __future__` and `__all__` are left out; an import after the first code is refused
    (it could not be moved to the top of the file)."""
    tree = ast.parse(text)
    stmts = list(tree.body)
    lines = text.splitlines(keepends=True)
    k = 0
    if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant) \
            and isinstance(stmts[0].value.value, str):
        k = 1
    imports: list[str] = []
    start = stmts[k - 1].end_lineno if k else 0
    while k < len(stmts) and isinstance(stmts[k], ast.Import | ast.ImportFrom):
        if not (isinstance(stmts[k], ast.ImportFrom) and stmts[k].module == "__future__"):
            imports.append(ast.unparse(stmts[k]))
        start = stmts[k].end_lineno
        k += 1
    drop: set[int] = set()
    names: set[str] = set()
    for st in stmts[k:]:
        if isinstance(st, ast.Import | ast.ImportFrom):
            raise ValueError(f"line {st.lineno}: a top-level import after the code cannot be inlined")
        targets = _defined(st)
        if targets == {"__all__"}:
            drop.update(range(st.lineno - 1, st.end_lineno))
            continue
        names |= targets
    body = "".join(line for i, line in enumerate(lines) if i >= start and i not in drop)
    return imports, body.strip("\n") + "\n", names


def _defined(st: ast.stmt) -> set[str]:
    if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {st.name}
    targets = st.targets if isinstance(st, ast.Assign) else [st.target] \
        if isinstance(st, ast.AnnAssign | ast.AugAssign) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


@dataclass
class Script:
    plans: dict[str, dict]  # model name -> its resolved settings
    source_name: str
    modules: list[Standalone] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)  # model name -> its class's name
    reason: str | None = None  # why the plan is not written out as a script of its own
    reads_files = True  # it takes --data-root (as a written-out script does for a dataset)

    def module(self, header: str, classes: list[ClassDef]) -> str:
        """The whole file: header, imports, classes, the runtime, the plan and `main`."""
        imports = {"import argparse", "import copy", "import json", "import os", "import sys",
                   "import torch"} | set().union(*(c.imports for c in classes))
        for m in self.modules:
            imports |= set(m.imports)
        parts = [header.rstrip() + "\n\n", "from __future__ import annotations\n\n",
                 sorted_imports(imports), "\n\n",
                 "\n\n".join(class_source(c) for c in classes)]
        for i, m in enumerate(self.modules):
            rule = (f"# ---- netdsl/runtime/{m.name}.py, as it is in netdsl "
                    f"{_version()} {'-' * 40}"[:89] + "\n")
            if i == 0 and self.reason:
                rule = "".join("# " + line + "\n" for line in _wrap(
                    "netdsl compile writes the training script of a plan out as plain "
                    f"PyTorch; it does not yet write out {comment_text(self.reason)}, so "
                    "netdsl's own runtime follows, as netdsl run runs it.")) + rule
            parts.append("\n\n" + rule)
            parts.append(m.body)
        parts.append("\n\n" + self._glue())
        return "".join(parts)

    def _glue(self) -> str:
        """PLAN (or PLANS and MODELS), main() and report()."""
        one = len(self.plans) == 1
        first = next(iter(self.plans))
        rule = f"# ---- the training plan{'' if one else 's'} from " \
               f"{comment_text(self.source_name)}, resolved "
        out = [(rule + "-" * 88)[:88]]
        if one:
            out += format_literal("PLAN", self.plans[first], literal)
        else:
            out += format_literal("PLANS", self.plans, literal)
            out += format_statement("MODELS = {" + ", ".join(f"{literal(n)}: {self.classes[n]}" for n in self.plans)
                                    + "}", 0)
        plan, build = ("PLAN", self.classes[first]) if one else ("PLANS[args.model]",
                                                                 "MODELS[args.model]")
        what = first if one else "one of the models"
        body = [Stmt(f"parser = argparse.ArgumentParser(description={literal(_description(what, self.source_name))})")]
        if not one:
            body.append(Stmt(f'parser.add_argument("--model", choices=list(PLANS), default={literal(first)}, '
                             'help="the model to train (default: %(default)s)")'))
        body += [Stmt(f"parser.add_argument({literal(flag)}, {extra}help={literal(text)})")
                 for flag, extra, text in self._options()]
        body += [
            Stmt("args = parser.parse_args(argv)"),
            Stmt(f"cfg = copy.deepcopy({plan})"),
            Stmt('for key in ("epochs", "seed", "device"):', body=[
                Stmt("if getattr(args, key) is not None:", body=[Stmt("cfg[key] = getattr(args, key)")])]),
            Stmt('cfg["data"]["seed"] = cfg["seed"]'),
            Stmt("if args.data_root is not None:", body=[Stmt('cfg["data"]["root"] = args.data_root')]),
            Stmt('out = args.out or os.path.join("runs", cfg["model"])'),
            Stmt('rank = int(os.environ.get("RANK", "0"))  # under torchrun: rank 0 reports'),
            Stmt("try:", body=[Stmt('device = resolve_device(cfg["device"])'),
                               Stmt('data = load_data(**cfg["data"])')]),
            Stmt("except DataError as exc:", body=[Stmt('sys.exit(f"error: {exc}")')]),
            Stmt("if data.info.loading_note() and rank == 0:",
                 body=[Stmt("print(data.info.loading_note(), file=sys.stderr)")]),
            Stmt("try:", body=[Stmt("resume = load_checkpoint(args.resume, device) if args.resume else None"),
                               Stmt("check_resume(resume, cfg)")]),
            Stmt("except ValueError as exc:  # a damaged or foreign file, or one that cannot continue",
                 body=[Stmt('sys.exit(f"error: {exc}")')]),
            Stmt("progress = Progress(sys.stderr if args.json else None, quiet=rank > 0)"),
            Stmt("try:", body=[Stmt(
                f"result = fit({build}, data, cfg, device=device, "
                'checkpoint_dir=os.path.join(out, "checkpoints"), resume=resume, '
                'progress=progress, model_name=cfg["model"])')]),
            Stmt("except TrainingInterrupted as exc:", body=[
                Stmt('where = f"; resume with --resume {exc.checkpoint}" if exc.checkpoint else ""'),
                Stmt("sys.exit(f\"{exc.result['message']}{where}\" if rank == 0 else 130)")]),
            Stmt("except (DataError, SettingError) as exc:  # a bad file, a bad pattern",
                 body=[Stmt('sys.exit(f"error: {exc}")')]),
            Stmt("except DiskFull as exc:", body=[Stmt('sys.exit(f"error: {exc.strerror}")')]),
            Stmt('trained = result.pop("model")'),
            Stmt("if rank > 0:", body=[Stmt('return 1 if result["status"] == "diverged" else 0')]),
            Stmt('if result["status"] != "diverged":', body=[
                Stmt("os.makedirs(out, exist_ok=True)"),
                Stmt('torch.save(trained.state_dict(), os.path.join(out, "weights.pt"))')]),
            Stmt("if args.json:", body=[Stmt("print(json.dumps(result, indent=2, default=str))")]),
            Stmt("else:", body=[Stmt("report(result)")]),
            Stmt('return 1 if result["status"] == "diverged" else 0'),
        ]
        doc = f"Train {doc_text(what)} and evaluate it on the test split, as `netdsl run` does."
        main = ["", "", "def main(argv=None):", f'    """{doc}"""', *statements(body, 4)]
        report = ["", "", "def report(result):",
                  '    """Print the lines `netdsl run` prints at the end."""',
                  *statements([
                      Stmt('if result["message"]:', body=[Stmt('print(result["message"])')]),
                      Stmt('if result["test"]:', body=[Stmt(
                          'print("  ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))')]),
                      Stmt('if result["best"]:', body=[
                          Stmt('best = result["best"]'),
                          Stmt("print(f\"best {best['monitor']} {best['value']:.4f} at epoch "
                               "{best['epoch']}\")")]),
                  ], 4)]
        tail = ["", "", 'if __name__ == "__main__":', "    sys.exit(main())"]
        return "\n".join(out + main + report + tail) + "\n"

    def _options(self) -> list[tuple[str, str, str]]:
        """(flag, extra arguments, help) of the options after --model."""
        def plans(key: str) -> str:
            values = dict.fromkeys(str(p[key]) for p in self.plans.values())
            return " / ".join(values).replace("%", "%%")

        return [
            ("--epochs", "type=int, ", f"passes over the training data (default: {plans('epochs')})"),
            ("--device", "", f"auto, cpu, cuda, cuda:N or mps (default: {plans('device')})"),
            ("--data-root", "", "where the dataset lives (default: the plan's)"),
            ("--seed", "type=int, ", f"weights, shuffling and splits (default: {plans('seed')})"),
            ("--out", "", "folder for checkpoints/ and weights.pt (default: runs/MODEL)"),
            ("--resume", "", "a checkpoint to continue from, e.g. runs/MODEL/checkpoints/last.pt"),
            ("--json", 'action="store_true", ', "print the result as JSON (progress on stderr)"),
        ]


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, 86)


def _description(what: str, source_name: str) -> str:
    return f"Train {what} (generated by netdsl from {source_name}) and evaluate it."


def _version() -> str:
    from .._version import __version__

    return __version__


def training_script(spec, names: list[str], classes: list[ClassDef], required: bool) -> Script | None:
    """The script for the models among `names` that have a plan (E401 when `required` and
    none does); None when none does. (Class names never clash with the training code's
    names: lowering renames them, see lower.class_reserved.)"""
    trained = [n for n in names if n in spec.trains]
    if not trained:
        if required:
            spec.plan(names[0])  # raises E401 with the spec's own hint
        return None
    plans = {n: spec.plan(n).settings() for n in trained}
    modules = [standalone(m) for m in MODULES]
    classes_of = {c.model: c.name for c in classes if c.model is not None}
    return Script(plans, Path(spec.filename).name, modules, classes_of)
