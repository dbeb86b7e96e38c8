"""`netdsl run` (train a spec's model under its `train` plan) and `netdsl eval`."""

from __future__ import annotations

import json
import os
import sys

import click

from ..diagnostics import Diagnostic, NetdslError, use_color


def _overrides(epochs, seed, device, data_root, sets) -> list:
    from ..runtime.overrides import literal_setting, parse_set

    out = []
    if data_root is not None:
        out.append(literal_setting("data.root", data_root, "--data-root"))
    if epochs is not None:
        out.append(literal_setting("epochs", epochs, "--epochs"))
    if seed is not None:
        out.append(literal_setting("seed", seed, "--seed"))
    if device is not None:
        out.append(literal_setting("device", device, "--device"))
    problems = []
    for text in sets:  # report every broken --set at once
        try:
            out.append(parse_set(text))
        except NetdslError as exc:
            problems.extend(exc.diagnostics)
    if problems:
        raise NetdslError(problems)
    return out


def _metrics_line(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


@click.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-m", "--model", help="The model to train (default: the one with a train section).")
@click.option("--epochs", type=int, help="Override epochs.")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default: the plan's, else auto).")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Where the dataset lives (overrides the data's root=).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Folder for run folders.")
@click.option("--seed", type=int, help="Override seed (weights, shuffling, splits).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any setting, e.g. optimizer.lr=3e-4 or scheduler=StepLR(step_size=1)."
              " Repeatable.")
@click.option("--resume", type=click.Path(exists=False),
              help="Continue from a checkpoint file or a run folder.")
@click.option("--allow-changes", is_flag=True,
              help="With --resume: continue although the network or the training plan differs "
                   "from the checkpoint's (recorded as a note in the run folder).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON on stdout (progress goes to stderr).")
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Train in N processes on this machine, through torch's own launcher "
                   "(torch.distributed.run): one per GPU on CUDA, gloo on the CPU. The batch "
                   "size stays the global batch. Across machines run torchrun yourself: "
                   "torchrun --nnodes ... -m netdsl run SPEC.")
def run_command(spec, model, epochs, device, data_root, out, seed, sets, resume, allow_changes,
                as_json, nproc):
    """Train a model under its `train` section and evaluate it on the test split.

    Each run gets a folder under --out holding spec.net, plan.json, metrics.jsonl,
    checkpoints/ (last.pt, best.pt; interrupted.pt after Ctrl-C), weights.pt, curves.png and
    result.json. Ctrl-C stops after the current step and saves a checkpoint; resume with
    --resume. Exit status: 0 trained, 1 spec or data mistake or a diverged loss, 130 interrupted.

    --json (and netdsl.fit) gives one object that starts with model, epochs, train_loss and
    val_loss (last epoch), test_loss, test_accuracy, samples_per_second (training only) and
    run_dir; test_accuracy is a number for one loss term, an object {output: accuracy} for one
    term per output (multi-task; an output under two terms gives name_1, name_2), and null
    without a test split or an accuracy. The details follow: final (last epoch's metrics),
    test (all test metrics, e.g. test.mae, test.a.top5), best, history, files, notes.

    \b
    Examples:
      netdsl run specs/mnist.net --data-root ../shared/data
      netdsl run specs/mlp.net --epochs 3 --set optimizer.lr=0.05 --data-root ../shared/data
      netdsl run specs/lenet.net --set "scheduler=StepLR(step_size=1, gamma=0.7)" --seed 1
      netdsl run specs/mnist.net --resume runs/LeNet-20250101-120000
      netdsl run specs/mnist.net --nproc 2 --data-root ../shared/data
      netdsl run specs/linear_regression.net --json | jq '.train_loss'
    """
    from ..runtime.loop import TrainingInterrupted
    from ..runtime.runner import run
    from ..spec import load

    s = load(spec)
    overrides = _overrides(epochs, seed, device, data_root, sets)
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        from .launch import launch

        params = click.get_current_context().params
        sys.exit(launch(s, model, overrides, params))
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 reports
    world = int(os.environ.get("WORLD_SIZE", "1"))
    stream = sys.stderr if as_json else sys.stdout
    try:
        result = run(s, model, overrides, out=out, resume=resume, stream=stream,
                     allow_changes=allow_changes, allow_flag="--allow-changes")
    except TrainingInterrupted as exc:
        r = exc.result
        if rank:
            sys.exit(130)
        if as_json:
            click.echo(json.dumps(r, indent=2, default=str))
        where = f"; checkpoint: {r['checkpoint']}" if r.get("checkpoint") else ""
        click.echo(f"{r['message']}{where}", err=True)
        if r.get("checkpoint"):
            more = f" --nproc {world}" if world > 1 else ""
            click.echo(f"resume with: netdsl run {spec} --resume {r['run_dir']}{more}",
                       err=True)
        sys.exit(130)
    if rank:  # (a diverged loss: rank 0 says so, and its exit status is the job's)
        sys.exit(0)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    if result["status"] == "diverged":
        plan = s.plan(result["model"], overrides)
        lr_span = plan.span("optimizer.lr")
        tips = ["lower optimizer.lr"]
        if plan.clip_grad_norm is None:
            tips.append("set clip_grad_norm = 1.0")
        if plan.precision != "fp32":
            tips.append("use precision = fp32")
        hint = (", ".join(tips[:-1]) + " or " + tips[-1] if len(tips) > 1 else tips[0]) + (
            f"; the last good checkpoint is {result['checkpoint']}"
            if result.get("checkpoint") else "")
        diag = Diagnostic("E408", f"training diverged: {result['message']}", lr_span, hint)
        click.echo(diag.format(use_color(sys.stderr)), err=True)
        sys.exit(1)
    if not as_json:
        if result["message"]:
            click.echo(result["message"])
        if result.get("test"):
            click.echo(_metrics_line(result["test"]))
        if result.get("samples_per_second"):
            click.echo(f"{result['epochs']} epoch(s), {result['samples_per_second']:,.0f} "
                       "training samples/s")
        if result.get("best"):
            b = result["best"]
            click.echo(f"best {b['monitor']} {b['value']:.4f} at epoch {b['epoch']}")
        click.echo(f"run folder: {result['run_dir']}")


def _settings_help() -> str:
    """The epilog of `netdsl run --help`: every setting, from the declarations themselves."""
    from ..runtime.catalog import LOSSES, METRICS, OPTIMIZERS, SCHEDULERS
    from ..runtime.decl import show
    from ..runtime.plan import SETTINGS
    from ..runtime.sources import SOURCES, TRANSFORMS

    lists = {"data": SOURCES, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}
    lines = ["\b", "Settings of a train section (each can be overridden with --set KEY=VALUE, an",
             "argument of one with --set KEY.ARG=VALUE):"]
    for key, d in SETTINGS.items():
        default = {"value": show(d.default), "call": d.default or "none", "source": "required",
                   "loss": "by the data", "metrics": "by the loss", "mapping": "by name"}[d.kind]
        lines.append(f"  {key:<16}{default:<13}{d.doc}")
    lines += ["", "\b"]
    for key, family in lists.items():
        lines.append(f"{family.plural.capitalize()} ({key} = ...):")
        lines.extend(_wrap(", ".join(family.names())))
    lines.append("Transforms (data = MNIST(transform=[...])):")
    lines.extend(_wrap(", ".join(TRANSFORMS.names())))
    lines.append("Metrics (metrics = [...]):")
    lines.extend(_wrap(", ".join(METRICS)))
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, 90, initial_indent="  ", subsequent_indent="  ")


run_command.epilog = _settings_help()


@click.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-w", "--weights", required=True, type=click.Path(dir_okay=False),
              help="weights.pt from a run, or a checkpoint (.pt).")
@click.option("-m", "--model", help="The model (default: the one with a train section).")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Where the dataset lives (overrides the data's root=).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(spec, weights, model, device, data_root, as_json):
    """Evaluate saved weights on the test split of the spec's data (the validation split
    when the data has no test split), with the plan's losses and metrics.

    \b
    Examples:
      netdsl eval specs/mnist.net --weights runs/LeNet-20250101-120000/weights.pt \\
          --data-root ../shared/data
      netdsl eval specs/mlp.net -w runs/MLP-20250101-120000/checkpoints/best.pt --json
    """
    from ..runtime.runner import evaluate
    from ..spec import load

    s = load(spec)
    result = evaluate(s, weights, model, _overrides(None, None, device, data_root, ()))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for n in result["notes"]:
        click.echo(n, err=True)
    click.echo(f"{result['model']} on {result['split']} ({result['samples']} samples, "
               f"{result['device']}): {_metrics_line(result['metrics'])}")


__all__ = ["NetdslError", "eval_command", "run_command"]
