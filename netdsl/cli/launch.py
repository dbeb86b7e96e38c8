"""`netdsl run --nproc N`: N local processes through torch's own launcher, torchrun.

The spec and its plan are checked here first, once, so a mistake is one diagnostic and no
process starts; so is a device that cannot take N processes (more than its GPUs, nccl
without CUDA). Then `torch.distributed.run` starts N copies of `netdsl run` (the same
arguments, without --nproc) on one rendezvous of this machine; each joins the process group
and trains its part of every batch (runtime/loop.py `start_ranks`). A process that fails
ends the others (torchrun's agent stops them): the failing rank prints its own error, and
this says which rank it was, in one line, with its exit status. (A diverged loss is seen by
every rank at once; rank 0 alone reports it and exits with 1.)
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ..diagnostics import Diagnostic, NetdslError


def check_launch(plan, nproc: int) -> str:
    """The backend N processes of `plan` use; E404 when this machine cannot run them."""
    import torch

    backend = (plan.distributed.backend if plan.distributed is not None else "auto")
    cuda = plan.device.startswith("cuda") or (plan.device == "auto" and torch.cuda.is_available())
    span = plan.span("distributed") if plan.distributed is not None else plan.span("device")
    if backend == "nccl" and not cuda:
        raise NetdslError([Diagnostic(
            "E404", "the nccl backend runs on CUDA GPUs, and this run is on the cpu",
            plan.span("distributed.backend") or span,
            'use backend="gloo" (or "auto"), or device = "cuda" on a machine with GPUs')])
    if cuda:
        have = torch.cuda.device_count()
        if nproc > have:
            raise NetdslError([Diagnostic(
                "E404", f"--nproc {nproc} starts one process per GPU, and this machine has "
                f"{have} GPU{'s' if have != 1 else ''}", plan.span("device"),
                f"use --nproc {have}" if have else 'use device = "cpu" (gloo)')])
    return "nccl" if cuda and backend == "auto" else ("gloo" if backend == "auto" else backend)


def _argv(params: dict) -> list[str]:
    """`netdsl run`'s arguments from its parsed options, without --nproc."""
    out = ["run", str(params["spec"])]
    for name, flag in (("model", "--model"), ("epochs", "--epochs"), ("device", "--device"),
                       ("data_root", "--data-root"), ("out", "--out"), ("seed", "--seed"),
                       ("resume", "--resume")):
        if params.get(name) is not None:
            out += [flag, str(params[name])]
    for text in params.get("sets") or ():
        out += ["--set", text]
    if params.get("allow_changes"):
        out.append("--allow-changes")
    if params.get("as_json"):
        out.append("--json")
    return out


def launch(spec, model, overrides, params: dict) -> int:
    """Run `netdsl run` in params["nproc"] processes; the exit status of the job."""
    nproc = int(params["nproc"])
    plan = spec.plan(model, overrides)  # every mistake before anything starts
    check_launch(plan, nproc)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun would warn that it sets this; give each process its share of the cores
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    for name in list(logging.Logger.manager.loggerDict):  # its log lines, not ours
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = parse_args(["--nproc-per-node", str(nproc), "--standalone", "--module", "netdsl",
                       *_argv(params)])
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        codes = {f.exitcode for f in exc.failures.values()}
        if codes <= {130, -2}:  # Ctrl-C: rank 0 said where the checkpoint is
            return 130
        code = failure.exitcode
        how = (f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
        click.echo(f"netdsl: process {rank} of {nproc} {how}; the job stopped", err=True)
        return code if code > 0 else 1
    except (KeyboardInterrupt, SignalException):  # Ctrl-C: the processes stop themselves
        return 130
    return 0
