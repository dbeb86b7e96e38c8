"""`netdsl run` / `netdsl eval` and `netdsl.fit` / `netdsl.evaluate`: plan -> device -> data ->
model -> the standalone loop (runtime/loop.py), plus the run folder around it.

A run folder (`runs/MODEL-YYYYmmdd-HHMMSS/`) holds: `spec.net` (the spec as run), `plan.json`
(the resolved settings and notes), `metrics.jsonl` (one line per epoch), `checkpoints/`
(`last.pt`, `best.pt`, `interrupted.pt`; atomic writes), `weights.pt` (the final
state_dict), `curves.png` (loss and metric curves) and `result.json` (what `--json` prints).

Checkpoints carry a hash of the network (`network_record`: every node's op and arguments and
inputs, in order) and of the plan (`loop.plan_hash`, without the settings a resume may change:
epochs, device, the data's root). Resuming under another network or plan is E409 unless the
caller allows it (`allow_changes`), and then a note. A resumed run never overwrites the folder's
`spec.net` and `plan.json`: when its spec or settings differ from the latest copies there, it
writes `spec.resumed-N.net` and `plan.resumed-N.json` beside them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..diagnostics import Diagnostic, NetdslError, Reporter
from ..weightfile import damaged, load_state, unreadable
from . import loop
from .checks import check_fit, runtime_signature
from .data import DataError, load_data
from .data import resolve_device as data_device
from .plan import Note, Plan


class RunResult(dict):
    """The result of a run: the dict `--json` prints, plus `.model` (the trained module)."""

    model: Any = None


# ---- device, data, checks -----------------------------------------------------------------
def resolve_device(plan: Plan, notes: list[Note]) -> torch.device:
    """The device the plan asks for; E404 when it is not here. `auto` says what it chose."""
    name, span = plan.device, plan.span("device")
    if name == "auto":
        dev = data_device("auto")  # what a compiled script picks too: cuda, else mps, else cpu
        if dev.type == "cpu":
            notes.append(Note("device auto: no CUDA or MPS device found, using the cpu"))
        _check_precision(plan, dev)
        return dev
    try:
        dev = torch.device(name)
    except RuntimeError as exc:  # the plan checks names (E411), but a Plan can be made by hand
        raise NetdslError([Diagnostic("E411", f"invalid device {name!r}: {exc}", span,
                                      'write device = "cuda" or "cuda:N" (N from 0), or "cpu"')]) \
            from None
    problem = None
    if dev.type == "cuda":
        if torch.version.cuda is None:
            problem = (f"device {name} is not available: this torch build "
                       f"({torch.__version__}) has no CUDA support")
        elif not torch.cuda.is_available():
            problem = f"device {name} is not available: torch sees no CUDA device on this machine"
        elif dev.index is not None and dev.index >= torch.cuda.device_count():
            problem = (f"device {name} is not available: this machine has "
                       f"{torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            problem = f"device {name} is not available: there is no Apple MPS device here"
    elif dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        problem = f"device {name} is not available: there is no Intel XPU device here"
    if problem:
        raise NetdslError([Diagnostic("E404", problem, span,
                                      "use device = auto (or --device auto) to take what is "
                                      "there, or --device cpu")])
    _check_precision(plan, dev)
    return dev


def _check_precision(plan: Plan, dev: torch.device) -> None:
    span = plan.span("precision")
    if plan.precision == "fp16" and dev.type != "cuda":
        raise NetdslError([Diagnostic("E404", f"precision fp16 needs a CUDA device; this run is "
                                      f"on {dev.type}", span, "use precision = bf16 on the cpu")])
    if plan.precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise NetdslError([Diagnostic("E404", "this GPU does not support bf16", span,
                                      "use precision = fp16")])


def load(plan: Plan, settings: dict):
    """Load the plan's data (E406 when it cannot be) and check it against the model again,
    now that shapes and class counts are known."""
    try:
        with out_of_memory("loading the data"):
            data = load_data(**settings["data"])
    except DataError as exc:  # E406, or its kinds: E412 labels, E414 damaged files
        raise data_error(plan, exc) from None
    return data


def data_error(plan: Plan, exc: DataError) -> NetdslError:
    """A data mistake found loading the data, or reading a streamed batch, at the spec's
    data line."""
    first, *rest = exc.message.splitlines() or ["cannot load the data"]
    notes = [(line.strip(), None) for line in rest if line.strip()]
    return NetdslError([Diagnostic(exc.code, first, plan.span("data"), exc.hint, notes=notes)])


def check_memory(plan: Plan, graph, device: torch.device) -> None:
    """E413 before anything is allocated when the estimate (netdsl/memory.py) cannot fit."""
    from ..memory import memory_problem

    problem = memory_problem(graph, plan, str(device))
    if problem is not None:
        raise NetdslError([problem])


_OOM_TEXT = ("can't allocate memory", "out of memory", "not enough memory", "DefaultCPUAllocator")


@contextlib.contextmanager
def out_of_memory(doing: str):
    """A failed allocation (torch.OutOfMemoryError, MemoryError, torch's "can't allocate
    memory") while `doing` becomes E413, not an internal error."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and not any(t in text for t in _OOM_TEXT):
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        first = first.split(" (Triggered internally")[0][:300]
        raise NetdslError([Diagnostic(
            "E413", f"not enough memory: ran out while {doing} ({first})",
            hint="use a smaller batch_size, a model with fewer parameters, precision = bf16, "
            "or a machine (or device) with more memory")]) from None


def check_loaded(plan: Plan, graph, data, settings: dict, notes: list[Note]) -> None:
    rep = Reporter()
    found: list[Note] = []
    check_fit(plan, runtime_signature(data.info, type(plan.data).kind), graph, rep, found)
    known = {n.message for n in notes}
    notes.extend(n for n in found if n.message not in known)
    sched = settings.get("scheduler")
    if sched and sched["name"] == "OneCycleLR" and sched["kwargs"].get("total_steps"):
        updates = -(-_steps(data, settings) // settings["accumulate"])
        need = updates * settings["epochs"]
        if sched["kwargs"]["total_steps"] < need:
            rep.error("E401", f"OneCycleLR: total_steps={sched['kwargs']['total_steps']} is "
                      f"fewer than the {need} optimizer steps of this run",
                      plan.span("scheduler.total_steps"), "leave total_steps out: netdsl fills "
                      "it in")
    _batch_of_one(graph, data, settings, rep)
    rep.check()


def _batch_of_one(graph, data, settings: dict, rep: Reporter) -> None:
    """E407: BatchNorm over one value per channel fails in training on a batch of one sample
    ("Expected more than 1 value per channel"), and the last batch can be one sample."""
    n, b = data.train.n, settings["batch_size"]
    if settings["drop_last"] or (n % b != 1 and b != 1):
        return
    for _, node, g in graph.walk():
        if node.kind != "op" or not node.op.kind.startswith("BatchNorm") or not node.inputs:
            continue
        t = g.type_of(node.inputs[0])
        if t is not None and math.prod(t.shape[1:]) == 1:
            last = "every batch holds one sample" if b == 1 else \
                f"the last batch holds one sample ({n:,} = {n // b} x {b} + 1)"
            rep.error("E407", f"{node.op.kind} normalises {t} over the batch, one value per channel "
                      f"per sample, and {last}: torch cannot train on that",
                      node.span, "write drop_last = true, or a batch_size that leaves more "
                                 "than one sample over")
            return


def _steps(data, settings: dict) -> int:
    n, b = data.train.n, settings["batch_size"]
    return n // b if settings["drop_last"] else -(-n // b)


# ---- progress ---------------------------------------------------------------------------------
class RunProgress(loop.Progress):
    """Plain lines, or a tqdm bar per epoch on a terminal; logs each epoch to metrics.jsonl."""

    def __init__(self, stream=None, bar: bool | None = None, log: Path | None = None,
                 quiet: bool = False, batch_size: int | None = None):
        super().__init__(stream)
        out = stream or sys.stdout
        self.bar = (hasattr(out, "isatty") and out.isatty()) if bar is None else bar
        self.every = 10 if self.bar else 0
        self.log, self.quiet, self._tqdm = log, quiet, None
        self.batch_size = batch_size  # for the bar's samples/s
        self._since = (0, 0.0)  # (step, time) when the bar started

    def start(self, info):
        self.epochs = info["epochs"]
        if self.bar:  # a bar update costs a host sync: about 50 per epoch
            self.every = max(5, info["steps"] // 50)
        if not self.quiet:
            super().start(info)

    def step(self, epoch, step, steps, stats):
        if self._tqdm is None:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=steps, desc=f"epoch {epoch}/{self.epochs}", leave=False,
                              file=self.stream or sys.stdout, unit="step", dynamic_ncols=True)
            self._since = (step, time.perf_counter())  # rates from here on
        self._tqdm.n = step
        post = {k.removeprefix("train."): f"{v:.4f}" for k, v in stats.items()}
        done, seconds = step - self._since[0], time.perf_counter() - self._since[1]
        if self.batch_size and done > 0 and seconds > 0:
            post["samples/s"] = f"{done * self.batch_size / seconds:,.0f}"
        self._tqdm.set_postfix(post, refresh=False)
        self._tqdm.refresh()

    def epoch_end(self, record, epochs):
        self._close_bar()
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if not self.quiet:
            if self.bar:
                self._print(loop.format_record(record, epochs))
            else:
                super().epoch_end(record, epochs)

    def message(self, text):
        self._close_bar()
        super().message(text)

    def _close_bar(self):
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def close(self):
        self._close_bar()


# ---- the run folder ---------------------------------------------------------------------------
def run_folder(out: str | os.PathLike, model: str) -> Path:
    """A new folder `OUT/MODEL-YYYYmmdd-HHMMSS` (`-2`, `-3`, ... when taken)."""
    base = Path(out) / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise NetdslError([Diagnostic("E501", f"cannot create the run folder {path}: "
                                      f"{exc.strerror or exc}", hint="choose another --out")]) \
            from None
    return path


def plot(history: list[dict], path: Path, title: str) -> Path | None:
    """Loss and the first metric per epoch, train and validation, as a PNG (matplotlib Agg)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    metric = next((k.split(".", 1)[1] for k in history[-1]
                   if k.startswith("train.") and not k.endswith("loss")), None)
    panels = ["loss"] + ([metric] if metric else [])
    fig = Figure(figsize=(5 * len(panels), 3.6), dpi=110)
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for split in ("train", "val"):
            key = f"{split}.{name}"
            if key in history[-1]:
                ax.plot(epochs, [r.get(key, float("nan")) for r in history],
                        marker="o" if len(epochs) < 30 else None, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


# ---- run ------------------------------------------------------------------------------------
def run(spec, model: str | None = None, overrides=(), *, out: str | os.PathLike = "runs",
        resume: str | os.PathLike | None = None, progress: bool = True, stream=None,
        bar: bool | None = None, settings_kw: dict | None = None, allow_changes: bool = False,
        allow_flag: str | None = None) -> RunResult:
    """Train one model of a loaded spec; see the module docstring for the run folder.
    `allow_changes`: resume even when the network or the plan differs from the checkpoint's
    (a note says so); `allow_flag` is how the caller's user asks for that, named in the
    E409 that refuses it (e.g. "--allow-changes")."""
    ended = False
    try:
        with out_of_space():
            result = _run(spec, model, overrides, out=out, resume=resume, progress=progress,
                          stream=stream, bar=bar, settings_kw=settings_kw,
                          allow=(allow_changes, allow_flag))
        ended = True
        return result
    finally:  # under torchrun: leave the process group before the interpreter ends
        loop.leave_group(wait=ended)


@contextlib.contextmanager
def out_of_space():
    """A full disk while writing the run folder or a checkpoint becomes E410 (checkpoints are
    written atomically: the last good one is intact, and --resume continues from it)."""
    try:
        yield
    except loop.DiskFull as exc:
        raise NetdslError([Diagnostic("E410", exc.strerror)]) from None
    except (OSError, RuntimeError) as exc:
        if not loop.is_out_of_space(exc):
            raise
        where = f" to write {exc.filename}" if getattr(exc, "filename", None) else ""
        raise NetdslError([Diagnostic(
            "E410", f"no space left on the device{where}",
            hint="free some space (or choose another --out) and run again; a run with "
                 "checkpoints continues with --resume RUN_FOLDER")]) from None


def _run(spec, model, overrides, *, out, resume, progress, stream, bar, settings_kw,
         allow=(False, None)) -> RunResult:
    plan = spec.plan(model, overrides, **(settings_kw or {}))
    graph = spec.graph(plan.model)
    notes = list(plan.notes)
    settings = plan.settings()
    device = resolve_device(plan, notes)
    ranks, device = loop.start_ranks(device, settings)  # joins a torchrun job, if any
    if ranks.world > 1:
        notes.append(Note(distributed_note(ranks, settings)))
    check_memory(plan, graph, device)
    network = network_record(graph)
    state, folder = None, None
    if resume is not None:
        state, ckpt_file = _read_resume(resume, device, plan)
        folder = ckpt_file.parent.parent if (ckpt_file.parent.parent / "plan.json").exists() \
            and ckpt_file.parent.name == "checkpoints" else None
        _verify_best(ckpt_file.parent, settings)
        with out_of_memory(f"building {plan.model}"):
            own = spec.build(plan.model).state_dict()
        _fits(own, state["model"], ckpt_file, plan.model)
        notes.extend(_resume_notes(state, settings, ckpt_file, network, folder, spec, *allow))
        then = int(state.get("world", 1))
        if then != ranks.world:
            notes.append(Note(
                f"resuming on {ranks.world} process{'es' if ranks.world > 1 else ''} a run "
                f"that {then} process{'es' if then > 1 else ''} wrote: the same batches in "
                f"the same order, split over {ranks.world} now; random draws in the model "
                "(dropout) start anew from the seed, so the run will not match one that "
                "was never stopped"))
    data = load(plan, settings)
    if data.info.loading_note():
        notes.append(Note(data.info.loading_note()))
    check_loaded(plan, graph, data, settings, notes)
    if folder is None:  # rank 0 makes it; the others learn its name
        folder = Path(ranks.share(str(run_folder(out, plan.model)) if ranks.main else None))
    ckpt_dir = folder / "checkpoints"
    log = folder / "metrics.jsonl"
    if ranks.main:  # only rank 0 writes the run folder and shows progress
        spec_copy, plan_copy = _write_start(folder, spec, plan, settings, notes,
                                            resumed=state is not None)
        log.write_text("".join(json.dumps(r) + "\n" for r in (state or {}).get("history", [])),
                       encoding="utf-8")
    progress = progress and ranks.main
    shown = RunProgress(stream, bar, log if ranks.main else None, quiet=not progress,
                        batch_size=settings["batch_size"])
    if progress:
        shown.message(f"plan for {plan.model} ({spec.filename}):\n{plan.describe()}")
        for n in notes:
            shown.message(n.format())
    # the headline first (filled in at the end; see `headline`), then the details
    result = RunResult(spec=str(spec.filename), model=plan.model, epochs=0, train_loss=None,
                       val_loss=None, test_loss=None, test_accuracy=None,
                       samples_per_second=None, run_dir=str(folder), device=str(device))
    try:
        with out_of_memory(f"training {plan.model}"):
            out_ = loop.fit(lambda: spec.build(plan.model), data, settings, device=device,
                            checkpoint_dir=str(ckpt_dir), resume=state, progress=shown,
                            model_name=plan.model, network=network, ranks=ranks)
    except loop.DamagedArchive as exc:  # best.pt, read on resuming to restore the best epoch
        raise damaged(exc, "the run cannot restore its best epoch from it: start the run "
                      "again without --resume") from None
    except loop.TrainingInterrupted as exc:
        r = exc.result
        exc.result = {**result, **r, **headline(r, settings, data)}
        exc.result["notes"] = [n.format() for n in notes]
        if ranks.main:
            _write_json(folder / "result.json", exc.result)
        raise
    except loop.ResumeError as exc:  # a mid-epoch checkpoint it cannot continue
        raise NetdslError([Diagnostic("E409", exc.message, hint=exc.hint)]) from None
    except BaseException as exc:
        if ranks.main:
            _failed(folder, state is not None, exc)
        if isinstance(exc, DataError):  # a streamed file that cannot be read, or its labels
            raise data_error(plan, exc) from None
        if isinstance(exc, loop.SettingError):  # a freeze pattern or group takes nothing
            raise NetdslError([Diagnostic("E401", str(exc), plan.span(exc.key))]) from None
        raise
    trained = out_.pop("model")
    result.update(out_)
    if not ranks.main:  # the run folder is rank 0's
        result.model = trained
        return result
    result.update(headline(result, settings, data))
    result["parameters"] = sum(p.numel() for p in trained.parameters())
    result["data"] = {"source": data.info.source, **data.info.sizes}
    files = {"spec": str(spec_copy), "plan": str(plan_copy), "metrics": str(log)}
    if not result["history"] and state is None:  # diverged in its first epoch
        log.unlink(missing_ok=True)
        del files["metrics"]
    if result["status"] != "diverged":
        loop.save_checkpoint(str(folder / "weights.pt"), trained.state_dict())  # atomic
        files["weights"] = str(folder / "weights.pt")
    png = plot(result["history"], folder / "curves.png",
               f"{plan.model} ({Path(spec.filename).name})")
    if png:
        files["plot"] = str(png)
    if result.get("checkpoint"):
        files["checkpoint"] = result["checkpoint"]
    if ckpt_dir.joinpath("best.pt").exists():
        files["best"] = str(ckpt_dir / "best.pt")
    result["files"] = files
    result["notes"] = [n.format() for n in notes]
    _write_json(folder / "result.json", result)
    result.model = trained
    return result


def distributed_note(ranks: loop.Ranks, settings: dict) -> str:
    """What a run under several processes does with the batch, said when it starts."""
    b = loop.global_batch(settings, ranks.world)
    per = -(-b // ranks.world)
    split = f"{b // ranks.world}" if b % ranks.world == 0 else f"{b // ranks.world} or {per}"
    return (f"distributed: {ranks.world} processes ({ranks.backend}); each batch of {b} is "
            f"split {split} per process, gradients averaged as one process would take them")


def _failed(folder: Path, resumed: bool, exc: BaseException) -> None:
    """A run that stopped on an error leaves nothing that looks like a result: a new run
    with no checkpoint yet takes its folder with it; otherwise the folder stays (its
    checkpoints resume) and result.json says how the run ended."""
    ckpts = folder / "checkpoints"
    if not resumed and not (ckpts.is_dir() and any(ckpts.glob("*.pt"))):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    record = {"status": "failed", "message": message, "run_dir": str(folder)}
    with contextlib.suppress(OSError, ValueError):  # what the run before this one ended with
        record["previous"] = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    _write_json(folder / "result.json", record)


def accuracies(metrics: dict | None, split: str):
    """The accuracy of one split's metrics: a number for a single loss term, a dict output
    label -> accuracy when several terms report one (multi-task), None when none does."""
    if not metrics:
        return None
    if f"{split}.accuracy" in metrics:
        return metrics[f"{split}.accuracy"]
    per = {k[len(split) + 1:-len(".accuracy")]: v for k, v in metrics.items()
           if k.startswith(f"{split}.") and k.endswith(".accuracy")}
    return per or None


def headline(result: dict, settings: dict, data) -> dict:
    """The top-level summary of a finished run (`--json` and `netdsl.fit`): `train_loss` (last
    epoch), `test_loss`, `test_accuracy` (see `accuracies`; None without a test split),
    `samples_per_second` (training samples per second of training, evaluation excluded)."""
    final, test = result.get("final") or {}, result.get("test")
    history = result.get("history") or []
    per_epoch = (_steps(data, settings) * settings["batch_size"] if settings["drop_last"]
                 else data.train.n)
    seconds = sum(r.get("seconds", 0.0) for r in history) or result.get("seconds") or 0.0
    return {"train_loss": final.get("train.loss"),
            "val_loss": final.get("val.loss"),
            "test_loss": (test or {}).get("test.loss"),
            "test_accuracy": accuracies(test, "test"),
            "samples_per_second": round(per_epoch * len(history) / seconds, 1)
            if seconds and history else None}


def _write_start(folder: Path, spec, plan: Plan, settings: dict, notes: list[Note],
                 resumed: bool = False) -> tuple[Path, Path]:
    """The spec and the resolved plan as run: `spec.net` and `plan.json` in a new folder. A
    resumed run keeps the folder's copies: when its spec or settings differ from the latest
    ones there, it writes `spec.resumed-N.net` and `plan.resumed-N.json` (N from 1). Returns
    the (spec, plan) files that describe this run."""
    src = Path(spec.filename)
    text = src.read_bytes() if src.is_file() else spec.source.text.encode("utf-8")
    spec_file, plan_file = folder / "spec.net", folder / "plan.json"
    if resumed:
        n, spec_file, plan_file = _latest_copies(folder)
        same = spec_file.is_file() and spec_file.read_bytes() == text
        with contextlib.suppress(OSError, ValueError, AttributeError):
            old = json.loads(plan_file.read_text(encoding="utf-8")).get("settings")
            same = same and old == json.loads(json.dumps(settings, default=str))
        if same and plan_file.is_file():
            return spec_file, plan_file
        spec_file = folder / f"spec.resumed-{n + 1}.net"
        plan_file = folder / f"plan.resumed-{n + 1}.json"
    spec_file.write_bytes(text)
    _write_json(plan_file, {"spec": str(spec.filename), "settings": settings,
                            "plan": plan.describe().splitlines(),
                            "notes": [n.format() for n in notes]})
    return spec_file, plan_file


def _latest_copies(folder: Path) -> tuple[int, Path, Path]:
    """(N, spec file, plan file) of the latest copies in a run folder: N = 0 for `spec.net`
    and `plan.json`, else the highest N of `spec.resumed-N.net`."""
    numbers = (p.name[len("spec.resumed-"):-len(".net")] for p in folder.glob("spec.resumed-*.net"))
    n = max((int(k) for k in numbers if k.isdigit()), default=0)
    if n == 0:
        return 0, folder / "spec.net", folder / "plan.json"
    return n, folder / f"spec.resumed-{n}.net", folder / f"plan.resumed-{n}.json"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_resume(resume, device, plan: Plan):
    path = Path(resume)
    if path.is_dir():
        ckdir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = [p for p in (ckdir / "interrupted.pt", ckdir / "last.pt") if p.exists()]
        if not found:
            raise NetdslError([Diagnostic("E409", f"{path} holds no checkpoint (looked for "
                                          "checkpoints/interrupted.pt and checkpoints/last.pt)")])
        path = max(found, key=lambda p: p.stat().st_mtime)
    if not path.exists():
        raise NetdslError([Diagnostic("E501", f"{path}: no such checkpoint")])
    try:
        state = loop.load_checkpoint(str(path), device)
    except loop.DamagedArchive as exc:
        raise damaged(exc, "resume from another checkpoint of the run (checkpoints/best.pt, "
                      "last.pt, interrupted.pt) or start it again without --resume") from None
    except Exception as exc:  # unreadable, truncated or foreign files
        raise NetdslError([Diagnostic("E409", f"cannot resume from {path}: {unreadable(exc)}")]) \
            from None
    return state, path


def _verify_best(ckpt_dir: Path, settings: dict) -> None:
    """Resuming with early_stopping's restore_best reads best.pt too (loop.Trainer.load_state):
    check it before anything in the run folder is written."""
    best = ckpt_dir / "best.pt"
    if (settings.get("early_stopping") or {}).get("restore_best") and best.is_file():
        try:
            loop.verify_archive(best)
        except loop.DamagedArchive as exc:
            raise damaged(exc, "the run cannot restore its best epoch from it: start the run "
                          "again without --resume") from None


def _resume_notes(state: dict, settings: dict, path: Path, network: dict, folder: Path | None,
                  spec, allow: bool = False, flag: str | None = None) -> list[Note]:
    """Notes for a resumed run; E409 when the network or the plan (without the settings a
    resume may change, loop.RESUMABLE) differs from the checkpoint's, unless `allow`."""
    notes = [Note(f"resuming from {path}: {state['epoch']} epoch(s)"
                  + (f" and {state['step']} step(s)" if state["step"] else "") + " done")]
    old = state.get("settings") or {}
    changed = _plan_changes(old, settings)
    then = _latest_copies(folder)[1:] if folder is not None else None
    how = f"; {flag} continues with the change" if flag else ""
    recorded = state.get("network")
    if isinstance(recorded, dict) and recorded.get("hash"):
        if recorded["hash"] != network["hash"]:
            what = _network_change(recorded.get("layers") or [], network["layers"])
            if not allow:
                raise NetdslError([Diagnostic(
                    "E409", f"the network changed since {path} was written ({what}): resume "
                    f"with the spec that trained it{f' ({then[0]})' if then else ''}, or start "
                    f"a new run without --resume{how}")])
            notes.append(Note(f"the network differs from the checkpoint's ({what}); the run "
                              "continues with the new network, as asked"))
    else:
        notes.append(Note(f"{path} records no hash of its network (a compiled script or an "
                          "older netdsl wrote it): the network was not compared"))
    if state.get("plan_hash") is not None and state["plan_hash"] != loop.plan_hash(settings) \
            and not allow:
        if changed:
            key, a, b = _first_difference(changed[0], old.get(changed[0]),
                                          settings.get(changed[0]))
            what = (f"{key}: {_short(a)} then, {_short(b)} now"
                    + (f"; also {', '.join(changed[1:])}" if changed[1:] else ""))
        else:
            what = "its settings differ"
        where = f" ({then[1]}" if then else " ("
        raise NetdslError([Diagnostic(
            "E409", f"the training plan changed since {path} was written ({what}): resume "
            f"with the plan that trained it{where}{'; ' if then else ''}only epochs, device and "
            f"the data's root may change), or start a new run without --resume{how}")])
    try:
        loop.check_resume(state, settings)
    except loop.ResumeError as exc:
        raise NetdslError([Diagnostic("E409", f"{exc.message} ({path})", hint=exc.hint)]) \
            from None
    for key in changed:
        notes.append(Note(f"{key} differs from the checkpoint's ({json.dumps(old.get(key))} "
                          f"then, {json.dumps(settings.get(key))} now); the run continues with "
                          "the new value" + (", as asked" if allow else "")))
    if state["epoch"] >= settings["epochs"] and not state["step"]:
        notes.append(Note(f"the checkpoint already has {state['epoch']} epoch(s) and epochs = "
                          f"{settings['epochs']}: nothing to train (raise --epochs to continue)"))
    return notes


def _plan_changes(old: dict, new: dict) -> list[str]:
    """The settings that differ, leaving out those a resumed run may change."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in loop.RESUMABLE or old.get(key) == new.get(key):
            continue
        if key == "data":
            a = {k: v for k, v in (old.get(key) or {}).items() if k not in loop.RESUMABLE_DATA}
            b = {k: v for k, v in (new.get(key) or {}).items() if k not in loop.RESUMABLE_DATA}
            if a == b:
                continue
        out.append(key)
    return out


def _first_difference(key: str, a, b) -> tuple[str, object, object]:
    """The first setting below `key` where `a` and `b` differ: ("optimizer.kwargs.lr", 0.01,
    0.02); the whole values where they are not both dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(f"{key}.{k}", a.get(k), b.get(k))
    return key, a, b


def _short(value, width: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def network_record(graph) -> dict:
    """What checkpoints record of a network: `hash`, of every node in order through its
    blocks (kind, op with every argument, inputs, shared weights; the types of inputs) and
    the outputs, and `layers`, one [line, hash] per node, to say where two networks differ."""
    import hashlib

    layers = []
    for qual, node, _ in graph.walk():
        prefix = qual[:len(qual) - len(node.name)]
        ins = [f"{prefix}{r}" for r in node.inputs]
        full = {"name": qual, "kind": node.kind, "block": node.block, "inputs": ins,
                "shares": node.shares, "n_outputs": node.n_outputs,
                "op": node.op.model_dump(mode="json") if node.op is not None else None,
                "types": [str(t) for t in node.types] if node.kind == "input" else None}
        if node.kind == "input":
            line = f"input {qual}: {', '.join(full['types'])}"
        elif node.kind == "block":
            line = f"{qual} = {node.block}(...)"
        else:
            try:
                args = node.op.label_args()
            except Exception:  # noqa: BLE001 -- a description only; the hash has the arguments
                args = "..."
            line = f"{qual} = {node.op.kind}({args})"
        if ins:
            line += f" of {', '.join(ins)}"
        text = json.dumps(full, sort_keys=True, default=str)
        layers.append([line, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]])
    for o in graph.outputs:
        line = f"output {o.name} = {o.ref}"
        layers.append([line, hashlib.sha256(line.encode("utf-8")).hexdigest()[:16]])
    whole = hashlib.sha256("\n".join(h for _, h in layers).encode("utf-8")).hexdigest()
    return {"hash": whole, "layers": layers}


def _network_change(then: list, now: list) -> str:
    """Where two networks' `layers` first differ, as `relu1 = ReLU() then, tanh1 = Tanh()
    now`, and how many more layers differ."""
    pairs = list(zip(then, now))
    diff = [i for i, (a, b) in enumerate(pairs) if list(a)[1:] != list(b)[1:]]
    extra = abs(len(then) - len(now))
    if diff:
        a, b = then[diff[0]][0], now[diff[0]][0]
        what = f"{a} then, {b} now" if a != b else f"{a}: an argument or input differs"
    elif len(then) > len(now):
        what = f"{then[len(now)][0]} is gone"
    elif len(now) > len(then):
        what = f"{now[len(then)][0]} is new"
    else:
        return "its structure differs"
    more = len(diff) - 1 + extra if diff else extra - 1
    return what + (f", and {more} more difference{'s' if more != 1 else ''}" if more > 0 else "")


# ---- eval -----------------------------------------------------------------------------------
def evaluate(spec, weights: str | os.PathLike, model: str | None = None, overrides=(), *,
             settings_kw: dict | None = None) -> dict:
    """Metrics of saved weights (a state_dict or a checkpoint) on the test split (else val)."""
    plan = spec.plan(model, overrides, **(settings_kw or {}))
    graph = spec.graph(plan.model)
    notes = list(plan.notes)
    settings = plan.settings()
    device = resolve_device(plan, notes)
    path = Path(weights)
    state = load_state(path, device)
    with out_of_memory(f"building {plan.model}"):
        net = spec.build(plan.model)
    _fits(net.state_dict(), state, path, plan.model)
    net.load_state_dict(state)
    data = load(plan, settings)
    check_loaded(plan, graph, data, settings, notes)
    split = "test" if data.test is not None else "val" if data.val is not None else "train"
    with out_of_memory(f"evaluating {plan.model}"):
        metrics = loop.evaluate(net, data, settings, device=device, split=split)
    return {"spec": str(spec.filename), "model": plan.model, "weights": str(path),
            "split": split, "samples": data.split(split).n, "device": str(device),
            "loss": metrics[f"{split}.loss"], "accuracy": accuracies(metrics, split),
            "metrics": metrics, "notes": [n.format() for n in notes]}


def _fits(own: dict, theirs, path, model: str) -> None:
    """E409 unless `theirs` is a state_dict with exactly the keys and shapes of `own`."""
    if not isinstance(theirs, dict):
        raise NetdslError([Diagnostic("E409", f"{path} holds no state_dict")])
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    wrong = [f"{k} {list(theirs[k].shape)} (model: {list(own[k].shape)})" for k in own
             if k in theirs and hasattr(theirs[k], "shape") and theirs[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:4])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
                 f"wrong shape: {', '.join(wrong[:3])}" if wrong else ""]
        raise NetdslError([Diagnostic("E409", f"{path} does not fit {model}: "
                                      + "; ".join(p for p in parts if p),
                                      hint="were these weights trained from another spec?")])
