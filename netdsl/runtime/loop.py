"""The training loop: optimizer, scheduler and warmup, losses, metrics, checkpoints, evaluation.

Standalone: copied verbatim by `netdsl compile`; import only torch, torchvision and the
standard library. It reads a plain settings dict (`cfg`, JSON-serialisable, made by
netdsl/runtime/plan.py `Plan.settings()`) and duck-types its data: anything with
`.loader(split, batch_size, device=, seed=, shuffle=, drop_last=)` and `.val`/`.test`
attributes, such as `Data` from netdsl/runtime/data.py (also standalone). `netdsl run` and
a compiled `model.py` both call `fit()` below, so they train and report identically.

Entry points
------------
fit(build_model, data, cfg, *, device, checkpoint_dir=None, resume=None, progress=None) -> dict
    Seed, build the model (`build_model()` after seeding, so its initial weights follow the
    seed), train, evaluate on the test split. Returns the result dict (see `Trainer.result`).
    On Ctrl-C it stops at the next optimizer step, writes `interrupted.pt` and raises
    `TrainingInterrupted` (a KeyboardInterrupt) carrying `.result`.
evaluate(model, data, cfg, *, device, split="test") -> dict of metrics (`test.loss`, ...).
seed_everything(seed, deterministic) -> restore function.
save_checkpoint(path, state) (atomic) / load_checkpoint(path, device) -> dict.
load_tensors(path, device) reads any file torch.save wrote, after `verify_archive` has
checked the CRC-32 of every entry of its zip archive (torch.load does not): a damaged file
raises `DamagedArchive` naming the entry (`data/3`) and the tensor it holds.
plan_hash(cfg) -> the hash of a settings dict that checkpoints carry (`plan_hash`), next to
the caller's `network` (e.g. {"hash": ..., "layers": [...]}, passed to `fit`).

The settings dict
-----------------
batch_size, eval_batch_size, epochs, shuffle, drop_last, accumulate (micro-batches per
optimizer step), warmup (optimizer steps of linear warmup), clip_grad_norm, clip_grad_value
(None or a number), precision ("fp32" | "bf16" | "fp16"), seed, deterministic,
inputs: [field per model input, in order] (each batch is a dict of fields),
losses: [{name, kwargs, tensors, output, field (the batch field it trains against), weight,
target ("class" | "same" | "binary"), prefix, metrics (of "accuracy", "top5", "miou",
"perplexity", "mae", "rmse"), numel (values per sample in the output), classes_last (class
scores in the last dimension: moved to dim 1, where torch reads them), classes (for miou)}],
optimizer: {name, kwargs, groups: [{match: [glob], kinds: [layer class], options}]},
freeze: [glob] and unfreeze_at (epoch from 1, or None): parameters that do not train yet,
scheduler: None | {name, kwargs, interval, infer, monitor},
early_stopping: None | {monitor, mode, patience, min_delta, restore_best},
checkpoint: None | {every, every_steps, every_minutes, keep ("last" | "best" | "all"),
    monitor, mode}.
Metric keys are `{split}.loss` (the weighted total) and `{split}.{prefix}{metric}` per term.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings

import torch

CHECKPOINT_FORMAT = "netdsl-checkpoint"
CHECKPOINT_VERSION = 2  # 2: a mid-epoch state keeps its sums over every rank


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: the state was saved to `.checkpoint`; `.result` says how far it got."""

    def __init__(self, result: dict):
        super().__init__(result.get("message", "interrupted"))
        self.result = result
        self.checkpoint = result.get("checkpoint")


# ---- set-up ---------------------------------------------------------------------------
def seed_everything(seed: int, deterministic: bool = False):
    """Seed torch (every device) and `random`; with `deterministic`, demand deterministic
    kernels. Returns a function that restores the global flags this changed."""
    random.seed(seed)
    torch.manual_seed(seed)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    def restore():
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]

    return restore


# ---- several processes (torchrun) --------------------------------------------------------
class Ranks:
    """This process's place among the processes of a torchrun job (alone: rank 0 of 1).
    Each collective below is called by every rank at the same point of the run, never
    inside a branch only some ranks take."""

    def __init__(self, rank: int = 0, world: int = 1, local: int = 0, backend=None):
        self.rank, self.world, self.local, self.backend = rank, world, local, backend

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks, in place."""
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def share(self, obj):
        """Rank 0's `obj`, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, 0)
        return box[0]


def leave_group(wait: bool = True) -> None:
    """Leave the process group this process joined, if any. Its threads must end before
    the interpreter does, and so must what holds it (DDP's reducer, FSDP's device mesh):
    collected first, or one of them is left to the interpreter's exit, where gloo aborts
    ("terminate called"). `wait`: after the others (a run that ended well; one that failed
    must not wait for ranks still training, or torchrun would never see it fail)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def start_ranks(device, cfg: dict):
    """(Ranks, device) of this process. Under torchrun (WORLD_SIZE above 1) it joins the
    job's process group: nccl on CUDA, gloo on the CPU (or the plan's backend), and a
    CUDA run takes the GPU of its local rank."""
    device = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = (cfg.get("distributed") or {}).get("backend", "auto")
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), dist.get_world_size(), local, backend), device


def _batch_sizes(loader) -> list[int]:
    """Samples in each of a loader's batches, over every rank."""
    b, n = loader.batch_size, loader.num_samples
    return [min(b, n - s * b) for s in range(len(loader))]


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of a rank's own draws (dropout), from the run's seed: the ranks differ,
    and a run draws the same again."""
    text = f"{int(seed)}/rank {int(rank)}/step {int(step)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def global_batch(cfg: dict, world: int) -> int:
    """Samples per optimizer micro-step over all ranks: batch_size itself, or batch_size
    per rank when the plan says distributed.batch = "per_rank"."""
    per_rank = (cfg.get("distributed") or {}).get("batch") == "per_rank"
    return int(cfg["batch_size"]) * (world if per_rank else 1)


class SettingError(ValueError):
    """A setting that does not fit the model it trains (a pattern that matches no
    parameter); `key` names the setting."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def _like(names: list[str]) -> str:
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"the trainable parameters are {shown}" if names else "nothing trains"


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """The optimizer over every trainable parameter. Each of the plan's parameter groups
    takes the parameters whose names match one of its glob patterns or whose layer is of
    one of its kinds (the first group that takes a parameter keeps it); the rest form the
    first group, with the optimizer's own settings."""
    spec = cfg["optimizer"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    groups = spec.get("groups") or []
    owner = {}  # parameter name -> the class name of the layer that holds it
    for prefix, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            owner[f"{prefix}.{name}" if prefix else name] = type(module).__name__
    taken: list[list] = [[] for _ in groups]
    rest = []
    for n, p in named:
        for i, g in enumerate(groups):
            if owner.get(n) in g["kinds"] or any(
                fnmatch.fnmatchcase(n, pat) for pat in g["match"]
            ):
                taken[i].append(p)
                break
        else:
            rest.append(p)
    for i, (g, params) in enumerate(zip(groups, taken)):
        if not params:
            which = ", ".join([*g["match"], *g["kinds"]])
            raise SettingError(
                f"parameter group {i + 1} ({which}) takes no parameter (an earlier group "
                f"may have taken them); {_like([n for n, _ in named])}",
                "optimizer",
            )
    # the rest first: its lr is the one progress lines show
    param_groups = [{"params": rest}] if rest else []
    param_groups += [{"params": ps, **g["options"]} for g, ps in zip(groups, taken)]
    return getattr(torch.optim, spec["name"])(param_groups, **spec["kwargs"])


def frozen_parameters(model: torch.nn.Module, cfg: dict) -> list[torch.nn.Parameter]:
    """The trainable parameters the plan's `freeze` patterns name (every pattern must
    match at least one)."""
    patterns = cfg.get("freeze") or []
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n, _ in named):
            raise SettingError(
                f"freeze: '{pat}' matches no trainable parameter; "
                f"{_like([n for n, _ in named])}",
                "freeze",
            )
    return [p for n, p in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]


def make_scheduler(optimizer, cfg: dict, steps_per_epoch: int):
    """The scheduler, with inferred arguments filled in: `total` is the number of times it
    steps in the whole run (epochs, or optimizer steps), `lr` the optimizer's lr."""
    spec = cfg.get("scheduler")
    if not spec:
        return None
    kwargs = dict(spec["kwargs"])
    updates = -(-steps_per_epoch // cfg["accumulate"])
    total = cfg["epochs"] * (updates if spec["interval"] == "step" else 1)
    for arg, what in spec.get("infer", {}).items():
        if kwargs.get(arg) is None:
            lrs = [g["lr"] for g in optimizer.param_groups]  # one per parameter group
            kwargs[arg] = total if what == "total" else lrs if len(lrs) > 1 else lrs[0]
    return getattr(torch.optim.lr_scheduler, spec["name"])(optimizer, **kwargs)


class Term:
    """One loss term: `weight * loss(outputs[output], target)` and the metrics it reports."""

    def __init__(self, spec: dict, device):
        kwargs = dict(spec["kwargs"])
        for name in spec.get("tensors", ()):
            if kwargs.get(name) is not None:
                kwargs[name] = torch.tensor(
                    kwargs[name], dtype=torch.float32, device=device
                )
        self.fn = getattr(torch.nn, spec["name"])(**kwargs)
        self.name, self.output, self.weight = (
            spec["name"],
            spec["output"],
            float(spec["weight"]),
        )
        self.field = spec["field"]  # the batch field it trains against
        self.target, self.prefix = spec["target"], spec.get("prefix", "")
        # values per sample in the output; None where they vary (read from the first batch)
        numel = spec.get("numel", 1)
        self.numel = None if numel is None else int(numel)
        self.mean = kwargs.get("reduction", "mean") in (
            "mean",
            "batchmean",
        )  # a batch mean
        self.threshold = (
            0.5 if spec["name"] == "BCELoss" else 0.0
        )  # probabilities vs logits
        self.metrics = list(
            spec.get("metrics", ())
        )  # the plan picked the ones that fit
        # class scores [.., C] (a language model's logits): moved to dim 1, where torch's
        # losses read the classes
        self.classes_last = bool(spec.get("classes_last"))
        self.classes = spec.get("classes")  # class terms: the number of classes
        # labels that count nowhere: torch's default -100 too (the padding of sequences)
        self.ignore = (
            kwargs.get("ignore_index", -100) if self.target == "class" else None
        )
        # what `record` returns, in order: the loss, one column per metric, then the
        # counts behind them (labels counted, per-class intersections and unions)
        self.columns = ["loss", *self.metrics]
        # dense labels (per pixel, per token; padded): the loss is a mean over labelled
        # positions, so epochs sum it weighted by them, not by samples
        self.per_label = (
            bool(spec.get("dense")) and self.target == "class" and self.mean
        )
        if self.target == "class" and (
            {"accuracy", "top5"} & set(self.metrics) or self.per_label
        ):
            self.columns.append("counted")
        if "miou" in self.metrics:
            c = int(self.classes)
            self.columns += [f"inter.{i}" for i in range(c)]
            self.columns += [f"union.{i}" for i in range(c)]

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """The output as the loss reads it."""
        return out.movedim(-1, 1) if self.classes_last else out

    def target_for(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.target == "binary":
            return y.to(out.dtype).view(out.shape)
        if self.target == "same" and y.shape != out.shape:
            raise RuntimeError(
                f"{self.name}: output shape {tuple(out.shape)} and target shape "
                f"{tuple(y.shape)} differ; refusing to broadcast"
            )
        return y

    def record(self, out: torch.Tensor, t: torch.Tensor, loss: torch.Tensor) -> list:
        """Per-batch values (0-dim tensors, on device): the loss as returned (a batch mean
        unless reduction="sum"), then one sum per column. Class scores may be dense
        ([N, C, d1, ...] against labels [N, d1, ...]): accuracy is then per position,
        and labels equal to ignore_index are not counted."""
        vals = [loss.detach()]
        out = out.detach()
        if self.numel is None:  # one run's samples share one size
            self.numel = out[0].numel() if out.dim() else 1
        valid = counted = None
        if self.target == "class" and len(self.columns) > 1:  # labels that count
            valid = t != self.ignore  # (not ignore_index)
            counted = valid.sum() if "counted" in self.columns else None
        if self.per_label:  # weighted by its labelled positions (none: adds nothing)
            vals[0] = torch.where(counted > 0, vals[0].double() * counted, 0.0).to(
                vals[0].dtype
            )
        for m in self.metrics:
            if m == "accuracy" and self.target == "class":
                vals.append(((out.argmax(1) == t) & valid).sum())
            elif m == "accuracy":
                vals.append(((out > self.threshold) == (t > 0.5)).sum())
            elif m == "top5":
                k = min(5, out.shape[1])
                hit = (out.topk(k, 1).indices == t.unsqueeze(1)).any(1)
                vals.append((hit & valid).sum())
            elif m == "mae":
                vals.append((out.float() - t).abs().sum())
            elif m == "rmse":
                vals.append((out.float() - t).square().sum())
            else:  # miou, perplexity: from the columns below, or from the loss
                vals.append(torch.zeros((), device=out.device))
        if counted is not None:
            vals.append(counted)
        if "miou" in self.metrics:
            c = int(self.classes)
            ok = valid & (t >= 0) & (t < c)
            # one-hot sums, not bincount: deterministic on every device
            pred = torch.nn.functional.one_hot(out.argmax(1)[ok], c).bool()
            true = torch.nn.functional.one_hot(t[ok], c).bool()
            vals.extend((pred & true).sum(0).unbind())
            vals.extend((pred | true).sum(0).unbind())
        return vals

    def finish(self, sums: list, n: int) -> dict:
        """Metric values from column sums over `n` samples (losses already weighted by batch
        size, so `loss` is the per-sample mean)."""
        col = dict(zip(self.columns, sums))
        out = {}
        for name in ["loss", *self.metrics]:
            v = col[name]
            per_position = name in ("accuracy", "top5") and self.target == "class"
            if per_position or (name == "loss" and self.per_label):
                out[name] = v / col["counted"] if col["counted"] else math.nan
            elif name == "loss":
                out[name] = v / n
            elif name == "perplexity":
                mean = out["loss"]  # per labelled position where labels are dense
                out[name] = math.exp(min(mean, 700.0)) if not math.isnan(mean) else mean
            elif name == "miou":
                c = int(self.classes)
                ious = [
                    col[f"inter.{i}"] / col[f"union.{i}"]
                    for i in range(c)
                    if col[f"union.{i}"]
                ]
                out[name] = sum(ious) / len(ious) if ious else math.nan
            elif name == "rmse":
                out[name] = math.sqrt(v / (n * self.numel))
            else:  # mae, binary accuracy: per value
                out[name] = v / (n * self.numel)
        return out


# ---- checkpoints --------------------------------------------------------------------------
class DiskFull(OSError):
    """A checkpoint could not be written for want of space; the previous file is intact."""


def save_checkpoint(path: str, state: dict) -> str:
    """Write `state` with torch.save, atomically: a crash or a full disk leaves the old file
    intact (the new one goes to `.NAME.PID.tmp` first, then replaces it in one rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if is_out_of_space(exc):
            kept = (
                f"{path} from before is intact"
                if os.path.exists(path)
                else "no file was left"
            )
            raise DiskFull(
                errno.ENOSPC,
                f"no space left on the device to write {path} ({kept}): free some space "
                f"and resume from the last checkpoint with --resume",
            ) from None
        raise
    return path


def is_out_of_space(exc: BaseException) -> bool:
    """torch.save reports a full disk as an OSError, or as a RuntimeError from its zip writer
    ("file write failed", "unexpected pos")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "file write failed" in text or "unexpected pos" in text
    )


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove `.NAME.PID.tmp` files that a killed checkpoint write left behind (those of a
    process still running are another run's write in progress, and stay)."""
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            parts = name.split(".")
            if not (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4):
                continue
            pid = int(parts[-2]) if parts[-2].isdigit() else 0
            if pid and pid != os.getpid() and _alive(pid):
                continue
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


class DamagedArchive(ValueError):
    """A file torch.save wrote fails its integrity check: an entry of its zip archive does
    not match its CRC-32, or the archive's directory cannot be read. `.entry` names the
    entry (`data/3`, `data.pkl`; None for the directory), `.tensor` what it holds."""

    def __init__(self, path, entry, tensor=None, why="does not match its CRC-32"):
        where = f"entry {entry}" if entry else "zip directory"
        what = f" ({tensor})" if tensor else ""
        super().__init__(f"{path} is damaged: its {where}{what} {why}")
        self.path, self.entry, self.tensor = str(path), entry, tensor


def verify_archive(path) -> None:
    """Check every entry of the zip archive torch.save writes against its CRC-32 (torch.load
    reads damaged bytes as they are). A file that is not a zip archive (torch's legacy
    format, a bare pickle) is left to torch.load. Raises `DamagedArchive`."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and not zipfile.is_zipfile(path):
        return
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 -- BadZipFile, NotImplementedError, ...
        raise DamagedArchive(path, None, why=f"cannot be read ({exc})") from None
    with archive:
        for info in archive.infolist():
            name = info.filename.split("/", 1)[-1]
            if info.external_attr & 0x10:  # torch reads a "folder" as zeros
                tensor = _stored_tensor(archive, info.filename)
                raise DamagedArchive(path, name, tensor, "is marked as a folder")
            try:
                with archive.open(info) as entry:
                    while entry.read(1 << 20):
                        pass
            except Exception as exc:  # noqa: BLE001 -- a bad CRC, a bad header, ...
                crc = "CRC" in str(exc)
                raise DamagedArchive(
                    path,
                    name,
                    _stored_tensor(archive, info.filename),
                    "does not match its CRC-32" if crc else f"cannot be read ({exc})",
                ) from None


def _stored_tensor(archive, entry: str):
    """Where the tensor stored in `entry` (`archive/data/3`) sits in the saved object, e.g.
    `model.fc1.weight` or `optimizer.state.0.exp_avg`; None when unknown. The pickle is read
    with stand-ins for every class it names: nothing in it runs."""
    import io
    import pickle

    top, _, rest = entry.partition("/")
    if not rest.startswith("data/"):
        return None
    key = rest[len("data/") :]

    class Stored:
        def __init__(self, pid):
            self.key = pid[2] if isinstance(pid, tuple) and len(pid) > 2 else None

    class Stub:
        def __new__(cls, *args, **kwargs):
            return object.__new__(cls)

        def __init__(self, *args, **kwargs):
            self.parts = [args, kwargs]

        def __setitem__(self, k, v):
            self.parts.append({k: v})

        def __setstate__(self, state):
            self.parts.append(state)

        def append(self, v):
            self.parts.append(v)

        def extend(self, vs):
            self.parts.extend(vs)

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            return type(name, (Stub,), {})

        def persistent_load(self, pid):
            return Stored(pid)

    def find(obj, trail, depth):
        if depth > 64:
            return None
        if isinstance(obj, Stored):
            return trail if obj.key == key else None
        if isinstance(obj, Stub):
            for part in obj.parts:  # a tensor's storage is among its arguments
                found = find(part, trail, depth + 1)
                if found is not None:
                    return found
            return None
        if isinstance(obj, dict):
            items = obj.items()
        elif isinstance(obj, (list, tuple)):
            items = enumerate(obj)
        else:
            return None
        for k, v in items:
            step = trail if isinstance(obj, tuple) else [*trail, str(k)]
            found = find(v, step, depth + 1)
            if found is not None:
                return found
        return None

    try:
        obj = Reader(io.BytesIO(archive.read(f"{top}/data.pkl"))).load()
        trail = find(obj, [], 0)
    except Exception:  # noqa: BLE001 -- the pickle itself may be what is damaged
        return None
    return "tensor " + ".".join(trail) if trail else None


def load_tensors(path, device="cpu"):
    """torch.load with weights_only=True (no code from the file runs), and without torch's
    warnings about the file: a refusal is one line, the caller's. The archive's CRCs are
    checked first (`verify_archive`): a damaged file raises `DamagedArchive`."""
    verify_archive(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=device, weights_only=True)


def load_checkpoint(path: str, device="cpu") -> dict:
    """A checkpoint written by `save_checkpoint` (tensors mapped to `device`)."""
    state = load_tensors(path, device)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a netdsl checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} was written by a newer netdsl (checkpoint version "
            f"{state['version']})"
        )
    return state


# settings a resumed run may change: how long it trains, where, and where its data lives
RESUMABLE = ("epochs", "device", "distributed")
RESUMABLE_DATA = ("root", "download")


def plan_hash(cfg: dict) -> str:
    """A hash of what a settings dict trains (`RESUMABLE` settings left out), which
    checkpoints carry as `plan_hash`: resuming under another plan can be told apart."""
    plan = {k: v for k, v in cfg.items() if k not in RESUMABLE}
    if isinstance(plan.get("data"), dict):
        plan["data"] = {
            k: v for k, v in plan["data"].items() if k not in RESUMABLE_DATA
        }
    text = json.dumps(plan, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResumeError(ValueError):
    """A checkpoint that the run cannot continue exactly; `hint` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message, self.hint = message, hint


def check_resume(state: dict | None, cfg: dict) -> None:
    """ResumeError when `state` cannot continue under `cfg` exactly: a scheduler whose length
    came from the checkpoint's epochs (OneCycleLR's total_steps, CosineAnnealingLR's T_max
    left out) when epochs changed. OneCycleLR would step past its end, a cosine climb again."""
    sched = cfg.get("scheduler")
    then = ((state or {}).get("settings") or {}).get("epochs")
    if not sched or then is None or then == cfg["epochs"]:
        return
    sized = [
        a
        for a, what in (sched.get("infer") or {}).items()
        if what == "total" and sched["kwargs"].get(a) is None
    ]
    if sized:
        unit = "optimizer steps" if sched.get("interval") == "step" else "epochs"
        raise ResumeError(
            f"cannot resume with epochs = {cfg['epochs']}: {sched['name']} planned its "
            f"schedule over the checkpoint's {then} epoch(s) ({sized[0]} is the {unit} of "
            f"those {then} epochs), so it cannot continue exactly",
            f"resume with --epochs {then}, or start a new run with the epochs you want (or "
            f"give {sized[0]}= in the scheduler to fix the schedule's length yourself)",
        )


# ---- progress -------------------------------------------------------------------------------
class Progress:
    """Plain-text progress: one line per epoch (thinned out when there are many) and messages.
    Subclasses (netdsl's tqdm bar) override `step`, called every `every` optimizer steps."""

    every = 0  # 0: no mid-epoch updates

    def __init__(self, stream=None, quiet: bool = False):
        self.stream, self.quiet = stream, quiet  # quiet: a process other than rank 0

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stdout, flush=True)

    def start(self, info: dict) -> None:
        self._print(info["description"])

    def step(self, epoch: int, step: int, steps: int, stats: dict) -> None:
        pass

    def epoch_end(self, record: dict, epochs: int) -> None:
        e = record["epoch"]
        stride = max(1, math.ceil(epochs / 20)) if epochs > 30 else 1
        if e == 1 or e == epochs or e % stride == 0:
            self._print(format_record(record, epochs))

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass


def format_record(record: dict, epochs: int) -> str:
    """`epoch 2/3  train.loss 0.2140  train.accuracy 0.9370  val.loss ...  lr 0.001  1.9s`"""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for k, v in record.items():
        if "." in k:
            parts.append(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}")
    parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


# ---- the trainer ----------------------------------------------------------------------------
class Trainer:
    """Trains one model under one settings dict. `fit()` below is the usual way in."""

    def __init__(
        self,
        model,
        data,
        cfg: dict,
        device,
        checkpoint_dir=None,
        progress=None,
        network=None,
        ranks=None,
    ):
        self.model, self.data, self.cfg = model, data, cfg
        self.ranks = ranks or Ranks()
        if self.sharded:  # before anything holds its parameters: sharding replaces them
            self._wrap()
        self.network = network  # what checkpoints record of the model (see `fit`)
        self.device = torch.device(device)
        self.checkpoint_dir = checkpoint_dir
        if checkpoint_dir and self.ranks.main:
            remove_stale_temporaries(checkpoint_dir)
        self.last_save = time.monotonic()  # for checkpoint every_minutes
        self.progress = progress or Progress()
        self._setup_terms()
        seed = cfg["seed"]
        world = self.ranks.world
        self.train_loader = data.loader(
            "train",
            global_batch(cfg, world),
            device=self.device,
            seed=seed,
            shuffle=cfg.get("shuffle", True),
            drop_last=cfg.get("drop_last", False),
            **({"rank": self.ranks.rank, "world": world} if world > 1 else {}),
        )
        self.steps = len(self.train_loader)
        if self.steps == 0:
            raise ValueError(
                f"batch_size {cfg['batch_size']} with drop_last leaves no batches"
            )
        self._weights = self._batch_weights(self.train_loader)
        self._local = self._weights.tolist()  # this rank's samples per step
        if world > 1:  # a rank's share of each batch, for gradients as one process's
            sizes = _batch_sizes(self.train_loader)
            self._share = [n * world / size for n, size in zip(self._local, sizes)]
        # a resumed epoch's sums per step before its checkpoint, over every rank (rank 0)
        self._prior = None
        self.accumulate = max(1, int(cfg.get("accumulate", 1)))
        self.frozen = frozen_parameters(
            model, cfg
        )  # before make_optimizer: it takes them
        self.optimizer = make_optimizer(model, cfg)
        self._set_frozen(0)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps)
        sched = cfg.get("scheduler") or {}
        self.step_scheduler = sched.get("interval") == "step"
        self.plateau = sched.get("name") == "ReduceLROnPlateau"
        precision = cfg.get("precision", "fp32")
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.net = self._wrap()  # what trains: the model, or DDP around it
        self.epoch = 0  # completed epochs
        self.start_step = (
            0  # steps already done in the current epoch (resume mid-epoch)
        )
        self.global_step = 0  # optimizer steps
        self.history: list[dict] = []
        self.best = None  # {"epoch", "monitor", "value"} for the checkpoint monitor
        self.early = {"best": None, "bad_epochs": 0}
        self.best_state = None
        self.elapsed = self.epoch_seconds = 0.0
        self.buffer = None  # (columns, steps): per-step values of the current epoch
        self.stop_requested = False
        self.consistent = True  # False while a step or the end of an epoch is half done
        self.status, self.message = "completed", ""
        self.checkpoint_path = None

    def _setup_terms(self) -> None:
        cfg = self.cfg
        self.terms = [Term(t, self.device) for t in cfg["losses"]]
        # per column: whether it holds a per-batch mean loss (weighted by batch size when summed)
        self._column_kinds = [
            c == "loss" and t.mean and not t.per_label
            for t in self.terms
            for c in t.columns
        ]
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            cfg.get("precision", "fp32")
        )
        # metric sums in float64 (exact counts, no drift over long epochs); MPS has no float64
        self.sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64

    # ---- pieces of a step ----------------------------------------------------------------
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def sharded(self) -> bool:
        """Whether the model is sharded over the ranks (FSDP2), not copied on each."""
        return self.ranks.world > 1 and self._strategy() == "fsdp"

    def _strategy(self) -> str:
        return (self.cfg.get("distributed") or {}).get("strategy", "ddp")

    def _wrap(self):
        """The model as training runs it: under several processes, DistributedDataParallel
        (gradients averaged over the ranks in backward), built again when the set of
        parameters that train changes (unfreeze_at); or, with strategy fsdp, the model
        itself sharded in place (torch.distributed.fsdp.fully_shard: each child module
        with parameters, then the whole), which averages the gradients likewise."""
        if self.ranks.world == 1:
            return self.model
        if self.sharded:
            from torch.distributed.fsdp import FSDPModule, fully_shard

            if not isinstance(self.model, FSDPModule):
                for child in self.model.children():
                    if any(True for _ in child.parameters()):
                        fully_shard(child)
                fully_shard(self.model)
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def forward(self, batch: dict, train: bool = False):
        """The model's outputs for one batch (its inputs are the batch's fields named by
        `cfg["inputs"]`, in the model's input order); `train`: through DDP."""
        net = self.net if train else self.model
        return net(*[batch[k] for k in self.cfg["inputs"]])

    def losses(self, out, batch: dict, scales=None):
        """(total loss, recorded values) for one batch; `scales` multiply each term's loss
        (a rank's share of the batch, see `_scales`)."""
        outs = out if isinstance(out, tuple) else (out,)
        total, vals = None, []
        for i, term in enumerate(self.terms):
            o = term.scores(outs[term.output])
            if (
                self.amp_dtype is not None
            ):  # losses and metrics in float32, as autocast does
                o = o.float()
            t = term.target_for(o, batch[term.field])
            loss = term.fn(o, t)
            vals.extend(term.record(o, t, loss))
            if scales is not None:
                loss = loss * scales[i]
            if term.weight != 1.0:
                loss = loss * term.weight
            total = loss if total is None else total + loss
        return total, vals

    def _scales(self, step: int, batch: dict):
        """Per term, what its loss is multiplied by on this rank, so that DDP's average of
        the ranks' gradients is the gradient one process takes of the whole batch: a batch
        mean by (this rank's samples × world / the batch's samples); a mean over labelled
        positions (dense labels) by the same ratio of labels, counted over the ranks; a
        sum by the world size. None for one process."""
        world = self.ranks.world
        if world == 1:
            return None
        share, mine = self._share[step], bool(self._local[step])
        dense = [t for t in self.terms if t.per_label]
        ratio = None
        if dense:  # one collective per step, on every rank
            own = torch.stack([(batch[t.field] != t.ignore).sum() for t in dense])
            own = own.to(self.sum_dtype) * float(mine)
            ratio = own * world / self.ranks.sum(own.clone()).clamp(min=1)
        out, j = [], 0
        for t in self.terms:
            if t.per_label:
                out.append(ratio[j].float())
                j += 1
            else:
                out.append(share if t.mean else float(world) * mine)
        return out

    def _agree(self) -> tuple[bool, bool]:
        """(stop, save) after an optimizer step, the same on every rank: whether any rank
        was asked to stop (Ctrl-C), and whether rank 0's clock says a checkpoint is due
        (every_minutes). One collective per step under several processes."""
        minutes = (self.cfg.get("checkpoint") or {}).get("every_minutes")
        due = bool(minutes) and time.monotonic() - self.last_save >= 60 * minutes
        if self.ranks.world == 1:
            return self.stop_requested, due
        dev = self.device if self.device.type == "cuda" else "cpu"
        flags = torch.tensor(
            [float(self.stop_requested), float(due and self.ranks.main)], device=dev
        )
        stop, save = self.ranks.sum(flags).tolist()
        return stop > 0, save > 0

    def optimizer_step(self) -> None:
        opt, scaler, cfg = self.optimizer, self.scaler, self.cfg
        if cfg.get("clip_grad_norm") or cfg.get("clip_grad_value"):
            if scaler is not None:
                scaler.unscale_(opt)
            if cfg.get("clip_grad_norm"):
                torch.nn.utils.clip_grad_norm_(self.params, cfg["clip_grad_norm"])
            if cfg.get("clip_grad_value"):
                torch.nn.utils.clip_grad_value_(self.params, cfg["clip_grad_value"])
        warmup = cfg.get("warmup", 0)
        saved = None
        if self.global_step < warmup:  # scale the scheduled lr for this one step only
            factor = (self.global_step + 1) / warmup
            saved = [g["lr"] for g in opt.param_groups]
            for g in opt.param_groups:
                g["lr"] = g["lr"] * factor
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if saved is not None:
            for g, lr in zip(opt.param_groups, saved):
                g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        self.global_step += 1
        if self.step_scheduler:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ---- epochs ----------------------------------------------------------------------------
    def _columns(self) -> int:
        return sum(len(t.columns) for t in self.terms)

    def _loss_columns(self) -> list:
        cols, i = [], 0
        for term in self.terms:
            cols.append(i)
            i += len(term.columns)
        return cols

    def _summarise(self, split: str, sums: list, n: int) -> dict:
        out, i, total = {}, 0, 0.0
        for term in self.terms:
            k = len(term.columns)
            vals = term.finish(sums[i : i + k], n)
            i += k
            total += term.weight * vals["loss"]
            for name, v in vals.items():
                if term.prefix or name != "loss":
                    out[f"{split}.{term.prefix}{name}"] = v
        return {f"{split}.loss": total, **out}

    def _batch_weights(self, loader) -> torch.Tensor:
        """This rank's samples per step, for turning per-batch mean losses into sums."""
        sizes = getattr(loader, "local_sizes", None)
        sizes = sizes() if sizes is not None else torch.tensor(_batch_sizes(loader))
        return sizes.to(self.sum_dtype).to(self.device)

    def _sums(self, upto: int) -> list:
        """Column sums over the epoch's first `upto` steps, over every rank (a collective
        under several processes; one host sync)."""
        return self._step_sums(upto).sum(1).tolist()

    def _step_sums(self, upto: int) -> torch.Tensor:
        """[columns, upto]: each step's sums (losses weighted by the samples behind them),
        over every rank; a resumed epoch's steps before its checkpoint as it saved them,
        so the sums add up in the order of a run that was never stopped."""
        buf = self.buffer[:, :upto]
        loss_cols = [i for i, c in enumerate(self._column_kinds) if c]
        weighted = buf.clone()
        weighted[loss_cols] = buf[loss_cols] * self._weights[:upto]
        if self._prior is not None:
            weighted[:, : self._prior.shape[1]] = self._prior
        return self.ranks.sum(weighted)

    def _set_frozen(self, epoch: int) -> None:
        """The `freeze` parameters do not train before epoch `unfreeze_at` (from 1)."""
        if not self.frozen:
            return
        until = self.cfg.get("unfreeze_at")
        train = until is not None and epoch + 1 >= until
        if train and not self.frozen[0].requires_grad and epoch + 1 == until:
            n = sum(p.numel() for p in self.frozen)
            self.progress.message(
                f"epoch {epoch + 1}: the {n:,} frozen parameter values train from now on"
            )
        changed = any(p.requires_grad != train for p in self.frozen)
        for p in self.frozen:
            p.requires_grad_(train)
        if (
            changed
            and self.ranks.world > 1
            and not self.sharded
            and hasattr(self, "net")
        ):
            self.net = self._wrap()  # DDP reduces the gradients of what trains now

    def train_epoch(self) -> dict | None:
        """One epoch (from `start_step`); the record, or None when the loss diverged."""
        model, loader, steps = self.model, self.train_loader, self.steps
        k = self.accumulate
        epoch = self.epoch
        if self.start_step == 0 or self.buffer is None:
            self.buffer = torch.zeros(
                (self._columns(), steps), dtype=self.sum_dtype, device=self.device
            )
            self._prior = None  # (belongs to the epoch that was resumed)
        buf = self.buffer
        model.train()
        self._set_frozen(epoch)
        t0 = time.perf_counter()
        every = max(0, int(getattr(self.progress, "every", 0) or 0))
        # (the same steps on every rank: the sums there are a collective)
        check = min(every, 50) if every and self.ranks.world == 1 else 50
        last_sync = self.start_step
        for step, batch in enumerate(
            loader.batches(epoch, self.start_step), self.start_step
        ):
            window = step - step % k
            n = min(k, steps - window)
            last = step + 1 - window >= n  # the micro-batch that steps the optimizer
            self.consistent = False
            sync = contextlib.nullcontext()
            if self.sharded:  # gradients reduced at the last micro-batch only
                self.model.set_requires_gradient_sync(last)
            elif self.ranks.world > 1 and not last:
                sync = self.net.no_sync()
            with sync:
                with self.autocast():
                    out = self.forward(batch, train=True)
                    loss, vals = self.losses(out, batch, self._scales(step, batch))
                if n > 1:
                    loss = loss / n
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            if self._local[step]:  # (a rank with no part of this batch records nothing)
                for j, v in enumerate(vals):
                    buf[j, step] = v
            if not last:
                continue  # more micro-batches before the optimizer step
            self.optimizer_step()
            self.start_step = step + 1
            self.consistent = True
            stop, save = self._agree()
            if stop:
                raise KeyboardInterrupt
            if step + 1 < steps:
                self.step_checkpoint(save)
            if step + 1 - last_sync >= check and step + 1 < steps:
                last_sync = step + 1
                sums = self._sums(step + 1)
                if not self._finite(sums, step + 1, epoch):
                    return None
                if every:
                    seen = min((step + 1) * loader.batch_size, loader.num_samples)
                    self.progress.step(
                        epoch + 1, step + 1, steps, self._summarise("train", sums, seen)
                    )
        sums = self._sums(steps)
        if not self._finite(sums, steps, epoch):
            return None
        self.epoch_seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": self.global_step, "lr": self.lr()}
        record.update(self._summarise("train", sums, loader.num_samples))
        return record

    def _finite(self, sums: list, upto: int, epoch: int) -> bool:
        cols = self._loss_columns()
        if all(math.isfinite(sums[i]) for i in cols):
            return True
        bad = ~torch.isfinite(self.buffer[cols, :upto]).all(0)
        first = int(bad.nonzero()[0, 0]) if bool(bad.any()) else upto - 1
        what = "nan" if any(math.isnan(sums[i]) for i in cols) else "inf"
        self.status = "diverged"
        self.message = (
            f"the loss became {what} at epoch {epoch + 1}, step {first + 1} of "
            f"{self.steps} (lr {self.lr():.3g})"
        )
        return False

    def evaluate(self, split: str) -> dict:
        cfg = self.cfg
        world = self.ranks.world
        loader = self.data.loader(
            split,
            cfg.get("eval_batch_size") or cfg["batch_size"],
            device=self.device,
            seed=cfg["seed"],
            shuffle=False,
            **({"rank": self.ranks.rank, "world": world} if world > 1 else {}),
        )
        weights = self._batch_weights(loader)  # this rank's samples per batch
        counts = weights.tolist()
        kinds = self._column_kinds
        was = self.model.training
        self.model.eval()
        sums = torch.zeros(len(kinds), dtype=self.sum_dtype, device=self.device)
        with torch.inference_mode():
            for i, batch in enumerate(loader.batches(0)):
                with self.autocast():
                    out = self.forward(batch)
                    _, vals = self.losses(out, batch)
                if counts[i]:  # every sample scored once: on the rank it falls to
                    for j, v in enumerate(vals):
                        sums[j] += v * weights[i] if kinds[j] else v
        self.model.train(was)
        return self._summarise(split, self.ranks.sum(sums).tolist(), loader.num_samples)

    # ---- monitors ----------------------------------------------------------------------------
    @staticmethod
    def _improved(value, best, mode: str, delta: float = 0.0) -> bool:
        if best is None:
            return math.isfinite(value)
        return value < best - delta if mode == "min" else value > best + delta

    def end_epoch(self, record: dict) -> bool:
        """Checkpoints, early stopping and epoch schedulers after an epoch; True to stop."""
        cfg = self.cfg
        if self.scheduler is not None and not self.step_scheduler:
            if self.plateau:
                self.scheduler.step(record[cfg["scheduler"]["monitor"]])
            else:
                self.scheduler.step()
        stop = False
        es = cfg.get("early_stopping")
        if es:
            value = record[es["monitor"]]
            if self._improved(value, self.early["best"], es["mode"], es["min_delta"]):
                self.early = {"best": value, "bad_epochs": 0, "epoch": record["epoch"]}
                if es.get("restore_best"):
                    self.best_state = {
                        k: v.detach().clone() for k, v in self.model_state().items()
                    }
            else:
                self.early["bad_epochs"] += 1
                if self.early["bad_epochs"] > es["patience"]:
                    stop = True
                    self.status = "early_stopped"
                    self.message = (
                        f"early stopping: {es['monitor']} has not improved for "
                        f"{self.early['bad_epochs']} epochs (best "
                        f"{self.early['best']:.4g} at epoch {self.early.get('epoch')})"
                    )
        ck = cfg.get("checkpoint")
        monitor = ck or cfg.get("monitor")
        improved = False
        if monitor:
            value = record[monitor["monitor"]]
            improved = self._improved(
                value, self.best and self.best["value"], monitor["mode"]
            )
            if improved:
                self.best = {
                    "epoch": record["epoch"],
                    "monitor": monitor["monitor"],
                    "value": value,
                }
        if ck and self.checkpoint_dir:
            state = None
            if (
                record["epoch"] % ck["every"] == 0
                or self.epoch == cfg["epochs"]
                or stop
            ):
                state = self.save_last()
                if ck["keep"] == "all":
                    self._save(f"epoch_{record['epoch']:03d}.pt", state)
            if improved and ck["keep"] in ("best", "all"):
                self._save("best.pt", state or self.state())
        return stop

    def step_checkpoint(self, minutes_due: bool = False) -> None:
        """`last.pt` in the middle of an epoch, every `every_steps` optimizer steps or
        `every_minutes` minutes (`minutes_due`, as `_agree` found; between steps, where
        the state is consistent)."""
        ck = self.cfg.get("checkpoint")
        if not (ck and self.checkpoint_dir):
            return
        n = ck.get("every_steps")
        if (bool(n) and self.global_step % n == 0) or minutes_due:
            self.save_last()

    def _save(self, name: str, state: dict) -> str:
        """Rank 0 writes checkpoint `name`; the other ranks only know its path."""
        path = os.path.join(self.checkpoint_dir, name)
        return save_checkpoint(path, state) if self.ranks.main else path

    def save_last(self) -> dict:
        state = self.state()
        self.checkpoint_path = self._save("last.pt", state)
        self.last_save = time.monotonic()
        if self.ranks.main:
            with contextlib.suppress(FileNotFoundError):  # superseded by last.pt
                os.remove(os.path.join(self.checkpoint_dir, "interrupted.pt"))
        return state

    # ---- state -----------------------------------------------------------------------------
    @staticmethod
    def _whole(load: bool = False):
        """Whole state dicts of a sharded model: gathered to rank 0 on the CPU, or (`load`)
        loaded from rank 0's and sent to every rank."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        if load:
            return StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def model_state(self) -> dict:
        """The model's whole state dict: of a sharded model, gathered from every rank (a
        collective; rank 0 gets it, on the CPU), so checkpoints and weights are the same
        files under any number of processes."""
        if not self.sharded:
            return self.model.state_dict()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=self._whole())

    def load_model_state(self, state: dict) -> None:
        if not self.sharded:
            self.model.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(self.model, state, options=self._whole(load=True))

    def _optimizer_state(self) -> dict:
        if not self.sharded:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(
            self.model, self.optimizer, options=self._whole()
        )

    def _load_optimizer_state(self, state: dict) -> None:
        if not self.sharded:
            self.optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(
            self.model, self.optimizer, state, options=self._whole(load=True)
        )

    def state(self) -> dict:
        """Everything needed to continue exactly where training is now."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "step": self.start_step,
            "global_step": self.global_step,
            "model": self.model_state(),
            "optimizer": self._optimizer_state(),
            "scheduler": self.scheduler.state_dict()
            if self.scheduler is not None
            else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all()
                if self.device.type == "cuda"
                else [],
                # each rank's own (its dropout draws), under several processes
                "ranks": self.ranks.gather(torch.get_rng_state())
                if self.ranks.world > 1
                else None,
            },
            "world": self.ranks.world,
            # the epoch's sums so far per step, over every rank: any number of processes
            # resumes them
            "step_sums": (
                self._step_sums(self.start_step).cpu()
                if self.start_step and self.buffer is not None
                else None
            ),
            "history": self.history,
            "best": self.best,
            "early": self.early,
            "elapsed": self.elapsed,
            "settings": self.cfg,
            "plan_hash": plan_hash(self.cfg),
            "network": self.network,
        }

    def load_state(self, state: dict) -> None:
        self.load_model_state(state["model"])
        self._load_optimizer_state(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.start_step = int(state["epoch"]), int(state["step"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.best, self.early = state["best"], dict(state["early"])
        self.elapsed = float(state.get("elapsed", 0.0))
        es = self.cfg.get("early_stopping")
        best_file = os.path.join(self.checkpoint_dir or "", "best.pt")
        if (
            es
            and es.get("restore_best")
            and self.checkpoint_dir
            and os.path.exists(best_file)
            and (self.cfg.get("checkpoint") or {}).get("monitor") == es["monitor"]
        ):
            self.best_state = load_checkpoint(best_file, self.device)["model"]
        world, then = self.ranks.world, int(state.get("world", 1))
        if world == then:
            rng = (
                state["rng"]["torch"]
                if world == 1
                else state["rng"]["ranks"][self.ranks.rank]
            )
            torch.set_rng_state(rng.cpu())
        else:  # each rank draws anew, from the seed, its rank and the step
            torch.manual_seed(
                _rank_seed(self.cfg["seed"], self.ranks.rank, self.global_step)
            )
        if self.device.type == "cuda" and state["rng"]["cuda"] and world == then == 1:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        if self.start_step:
            prior = state.get("step_sums")
            if prior is None:  # a checkpoint of one process, before step_sums: means
                prior = state["buffer"].to(self.device, self.sum_dtype)
                if prior.shape[0] == self._columns():
                    loss_cols = [i for i, c in enumerate(self._column_kinds) if c]
                    sizes = _batch_sizes(self.train_loader)[: self.start_step]
                    prior[loss_cols] *= torch.tensor(
                        sizes, dtype=self.sum_dtype, device=self.device
                    )
            if tuple(prior.shape) != (self._columns(), self.start_step):
                raise ResumeError(
                    f"the checkpoint stopped mid-epoch ({self.start_step} steps into epoch "
                    f"{self.epoch + 1}) and records its metrics in another layout (an "
                    "older netdsl wrote it)",
                    "resume from a checkpoint written at the end of an epoch, or start "
                    "the run again",
                )
            self.buffer = torch.zeros(
                (self._columns(), self.steps), dtype=self.sum_dtype, device=self.device
            )
            if self.ranks.main:  # counted once, on one rank
                self._prior = prior.to(self.device, self.sum_dtype)

    # ---- the run ---------------------------------------------------------------------------
    def run(self) -> dict:
        epochs = self.cfg["epochs"]
        start = time.perf_counter() - self.elapsed
        with _graceful_interrupt(self):
            try:
                while self.epoch < epochs and self.status == "completed":
                    if self._agree()[0]:  # (every rank stops at the same point)
                        raise KeyboardInterrupt
                    record = self.train_epoch()
                    if record is None:
                        break
                    if self.data.val is not None:
                        record.update(self.evaluate("val"))
                    self.consistent = False
                    self.epoch += 1
                    self.start_step = 0
                    self.elapsed = time.perf_counter() - start
                    record["seconds"] = round(self.epoch_seconds, 3)
                    self.history.append(record)
                    stop = self.end_epoch(record)
                    self.consistent = True
                    self.progress.epoch_end(record, epochs)
                    if stop:
                        break
            except KeyboardInterrupt:
                self.elapsed = time.perf_counter() - start
                self.status = "interrupted"
                if self.consistent:
                    self.message = (
                        f"interrupted at epoch {self.epoch + 1}, step "
                        f"{self.start_step} of {self.steps}"
                    )
                    if self.checkpoint_dir:
                        self.checkpoint_path = self._save(
                            "interrupted.pt", self.state()
                        )
                else:  # a second Ctrl-C in the middle of a step: that state is not resumable
                    self.message = (
                        f"interrupted in the middle of epoch {self.epoch + 1}"
                        + (
                            f"; the last complete checkpoint is {self.checkpoint_path}"
                            if self.checkpoint_path
                            else ""
                        )
                    )
                raise TrainingInterrupted(self.result()) from None
        self.elapsed = time.perf_counter() - start
        if self.status == "diverged":
            return self.result()
        if self.best_state is not None:
            self.load_model_state(self.best_state)
        test = self.evaluate("test") if self.data.test is not None else None
        return self.result(test)

    def result(self, test: dict | None = None) -> dict:
        return {
            "status": self.status,
            "message": self.message,
            "epochs": self.epoch,
            "steps": self.global_step,
            "seconds": round(self.elapsed, 3),
            "final": self.history[-1] if self.history else None,
            "best": self.best,
            "test": test,
            "history": self.history,
            "checkpoint": self.checkpoint_path,
        }


@contextlib.contextmanager
def _graceful_interrupt(trainer: Trainer):
    """The first Ctrl-C asks the trainer to stop after the current optimizer step (so the
    saved state is consistent); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    first = [0.0]

    def handler(signum, frame):
        if trainer.stop_requested:
            # torchrun passes the terminal's Ctrl-C on to its processes, which had it
            # already: only a Ctrl-C that comes later stops at once
            if trainer.ranks.world == 1 or time.monotonic() - first[0] > 2.0:
                raise KeyboardInterrupt
            return
        trainer.stop_requested, first[0] = True, time.monotonic()
        trainer.progress.message(
            "stopping after this step (Ctrl-C again to stop at once)"
        )

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def describe(trainer: Trainer, model_name: str) -> str:
    sizes = {s: getattr(trainer.data, s) for s in ("train", "val", "test")}
    parts = ", ".join(
        f"{s} {split.n}" for s, split in sizes.items() if split is not None
    )
    n = sum(p.numel() for p in trainer.model.parameters())
    steps, epochs = trainer.steps, trainer.cfg["epochs"]
    return (
        f"training {model_name} ({n:,} parameters) on {trainer.device}: {parts} samples; "
        f"{steps} step{'s' if steps != 1 else ''} per epoch, "
        f"{epochs} epoch{'s' if epochs != 1 else ''}"
    )


def fit(
    build_model,
    data,
    cfg: dict,
    *,
    device="cpu",
    checkpoint_dir=None,
    resume=None,
    progress=None,
    model_name: str = "model",
    network=None,
    ranks=None,
) -> dict:
    """Seed, build the model, train it and evaluate it. `resume` is a checkpoint dict
    (`load_checkpoint`). `network` (plain values, e.g. a hash of the model's graph) is
    recorded in every checkpoint. Returns the result dict; `result["model"]` is the
    trained module. Under torchrun every process calls it (`ranks`: from `start_ranks`,
    which it calls itself when not given): each trains on its part of every batch, and
    only rank 0 writes checkpoints."""
    own = ranks is None  # (then this call leaves the process group it joined)
    if own:
        ranks, device = start_ranks(device, cfg)
    restore = seed_everything(cfg["seed"], cfg.get("deterministic", False))
    try:
        model = build_model().to(device)  # the same initial weights on every rank
        if ranks.world > 1:  # then each rank's own dropout draws
            torch.manual_seed(_rank_seed(cfg["seed"], ranks.rank))
        trainer = Trainer(
            model,
            data,
            cfg,
            device,
            checkpoint_dir,
            progress,
            network=network,
            ranks=ranks,
        )
        if resume is not None:
            trainer.load_state(resume)
        trainer.progress.start(
            {
                "description": describe(trainer, model_name),
                "steps": trainer.steps,
                "epochs": cfg["epochs"],
            }
        )
        try:
            result = trainer.run()
        finally:
            trainer.progress.close()
        if trainer.sharded:  # the trained weights, whole, in a model of their own
            whole = trainer.model_state()  # (every rank takes part; rank 0 gets them)
            model = build_model()
            if ranks.main:
                model.load_state_dict(whole)
        result["model"] = model
    except BaseException:
        if own:
            leave_group(wait=False)
        raise
    finally:
        restore()
    if own:
        leave_group()
    return result


def evaluate(model, data, cfg: dict, *, device="cpu", split: str = "test") -> dict:
    """Metrics of `model` on one split, computed exactly as during training."""
    trainer = Trainer.__new__(Trainer)  # evaluation needs no optimizer or train loader
    trainer.model, trainer.data, trainer.cfg = model.to(device), data, cfg
    trainer.device, trainer.ranks = torch.device(device), Ranks()
    trainer._setup_terms()
    return trainer.evaluate(split)
