"""Torch-free memory estimates: what a model needs against what this machine or device has."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .diagnostics import Diagnostic
from .ir.dims import lowest
from .ir.graph import Graph, parameter_counts

DTYPE_BYTES = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2,
               "int16": 2, "uint8": 1, "int8": 1, "bool": 1}
PARAM_BYTES = 4  # netdsl builds every parameter in float32; autocast leaves them so


def gib(n: float) -> str:
    """Bytes as people read them: `74.5 GiB`, `12.0 MiB`, `512 bytes`."""
    for unit, k in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class Budget:
    """The memory there is for a model: `bytes`, and `what` it is (for messages)."""

    bytes: int
    what: str

    def describe(self) -> str:
        return f"{self.what} is {self.bytes:,} bytes ({gib(self.bytes)})"


def host_budget() -> Budget | None:
    """The least of: this machine's physical memory (os.sysconf), the container's memory
    limit (cgroup memory.max) and what the address-space limit (ulimit -v, RLIMIT_AS) leaves
    this process. None when none of them can be read."""
    found: list[Budget] = []
    try:
        found.append(Budget(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                            "this machine's memory"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append(Budget(int(text), "the container's memory limit"))
            break
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append(Budget(max(0, soft - _address_space_used()),
                                f"what the address-space limit of {gib(soft)} (ulimit -v) leaves"))
    except (ImportError, OSError, ValueError):
        pass
    return min(found, key=lambda b: b.bytes) if found else None


def _address_space_used() -> int:
    """This process's virtual memory size (Linux /proc/self/statm), 0 when unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def device_budget(device: str) -> Budget | None:
    """The memory of a CUDA device `device` ("cuda", "cuda:N"), when torch is already
    imported (nothing here imports it) and sees that device; None otherwise."""
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        if not torch.cuda.is_available():
            return None
        index = int(device.partition(":")[2] or 0)
        total = torch.cuda.get_device_properties(index).total_memory
    except Exception:  # noqa: BLE001 -- no such device, a broken driver: no figure
        return None
    return Budget(int(total), f"the memory of {device} ({torch.cuda.get_device_name(index)})")


# ---- what training needs --------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Bytes a training run holds at once, by what holds them."""

    weights: int
    gradients: int
    optimizer: int
    optimizer_name: str
    activations: int
    batch_size: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        parts = [f"{gib(self.weights)} of weights", f"{gib(self.gradients)} of gradients"]
        if self.optimizer:
            parts.append(f"{gib(self.optimizer)} of {self.optimizer_name} state")
        parts.append(f"{gib(self.activations)} of activations at batch size {self.batch_size}")
        return ", ".join(parts[:-1]) + " and " + parts[-1]


def activation_bytes(graph: Graph) -> int:
    """Bytes per sample of every value the forward pass makes (backward keeps most of them)."""
    total = 0
    for _, n, _ in graph.walk():
        if n.kind != "block":
            # symbolic sizes count at their smallest: a warning never overstates
            total += sum(lowest(t.numel) * DTYPE_BYTES.get(t.dtype, 4) for t in n.types)
    return total


def training_estimate(graph: Graph, plan) -> Estimate:
    """What training `graph` under `plan` (runtime/plan.py) holds at its peak: float32
    weights and gradients, the optimizer's per-parameter state (`Optimizer.state_copies`)
    and the activations of one micro-batch (half of them under bf16/fp16 autocast)."""
    total, trainable = parameter_counts(graph)
    copies = plan.optimizer.state_copies()
    act = activation_bytes(graph) * plan.batch_size
    if plan.precision in ("bf16", "fp16"):
        act //= 2
    return Estimate(weights=total * PARAM_BYTES, gradients=trainable * PARAM_BYTES,
                    optimizer=copies * trainable * PARAM_BYTES, optimizer_name=plan.optimizer.kind,
                    activations=act, batch_size=plan.batch_size)


def _what_to_do(est: Estimate | None) -> str:
    if est is not None and est.activations > est.total / 2:
        return ("use a smaller batch_size (activations grow with it), precision = bf16, "
                "or a model with smaller feature maps")
    tips = "use a model with fewer parameters (fewer or narrower layers)"
    if est is not None and est.optimizer:
        tips += f", an optimizer with less state than {est.optimizer_name} (SGD keeps none)"
    return tips + ", or a machine with more memory"


# ---- the findings ---------------------------------------------------------------------------
def memory_warning(graph: Graph, plan=None) -> Diagnostic | None:
    """W311 when the model's parameters, or (with a training `plan`) its estimated training
    memory, exceed what this machine (or the plan's CUDA device) has."""
    total, _ = parameter_counts(graph)
    weights = total * PARAM_BYTES
    host = host_budget()
    if host is not None and weights > host.bytes:
        return Diagnostic("W311", f"{graph.name} holds {total:,} parameters, "
                          f"{weights:,} bytes ({gib(weights)}) in float32, but "
                          f"{host.describe()}", graph.span, _what_to_do(None))
    if plan is None:
        return None
    budget = device_budget(plan.device) or host
    est = training_estimate(graph, plan)
    if budget is not None and est.total > budget.bytes:
        return Diagnostic("W311", f"training {graph.name} needs about {est.total:,} bytes "
                          f"({gib(est.total)}: {est.describe()}), but {budget.describe()}",
                          graph.span, _what_to_do(est))
    return None


def memory_warnings(spec, models=None) -> list[Diagnostic]:
    """W311 for each model of a loaded spec (or those named) that may not fit, see
    `memory_warning`; a model's plan is its `train` section's."""
    found = []
    for name in models or spec.model_names:
        w = memory_warning(spec.graph(name), spec.plans.get(name))
        if w is not None:
            found.append(w)
    return found


def memory_problem(graph: Graph, plan, device: str) -> Diagnostic | None:
    """E413 when training `graph` under `plan` on `device` cannot fit: the weights in this
    machine's memory (the model is built there first), or the whole estimate on the device."""
    total, _ = parameter_counts(graph)
    est = training_estimate(graph, plan)
    host = host_budget()
    budget = device_budget(device) if device.startswith("cuda") else host
    if host is not None and est.weights > host.bytes:
        return Diagnostic("E413", f"not enough memory to build {graph.name}: its {total:,} "
                          f"parameters take {est.weights:,} bytes ({gib(est.weights)}), but "
                          f"{host.describe()}", graph.span, _what_to_do(None))
    if budget is not None and est.total > budget.bytes:
        return Diagnostic("E413", f"not enough memory to train {graph.name}: it needs about "
                          f"{est.total:,} bytes ({gib(est.total)}: {est.describe()}), but "
                          f"{budget.describe()}", graph.span, _what_to_do(est))
    return None
