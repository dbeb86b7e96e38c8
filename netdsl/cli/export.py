"""`netdsl export`: a model as a torch.export program, an ONNX file or safetensors weights."""

from __future__ import annotations

import json

import click

FORMAT_HELP = """pt2: a torch.export program (torch.export.load), the batch and every declared
dimension dynamic. onnx: an ONNX file (torch.onnx dynamo exporter) whose dynamic axes are named
after the spec's dimensions, checked with ONNX Runtime. safetensors: the weights alone, under
the spec's parameter names. (TorchScript is deprecated in PyTorch 2 and not offered: use pt2.)"""


@click.command("export")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-f", "--format", "fmt", required=True,
              type=click.Choice(["pt2", "onnx", "safetensors"]), help=FORMAT_HELP)
@click.option("-o", "--output", metavar="FILE",
              help="Where to write (default: MODEL.pt2, MODEL.onnx or MODEL.safetensors here).")
@click.option("-w", "--weights", type=click.Path(dir_okay=False),
              help="weights.pt from a run, a checkpoint (.pt) or a .safetensors file (default: "
                   "the spec's initialisation).")
@click.option("-m", "--model", help="The model to export (default: the first).")
@click.option("--opset", type=click.IntRange(18, 30),
              help="ONNX opset (default: torch's; its exporter writes 18 and above).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initialisation when no --weights are given.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_command(spec, fmt, output, weights, model, opset, seed, as_json):
    """Export a model of SPEC as a deployable file, proven before it is written.

    Every dimension the spec declares (`input image: [3, H, W] where H >= 32`) stays dynamic,
    with its declared range, and so does the batch; a size that torch would fix to the
    example's is an error, not a silently static file. The file is read back and run at the
    smallest, a typical and the largest admissible sizes, and its outputs must equal the live
    module's within the printed tolerance; only then is it moved into place.

    \b
    Examples:
      netdsl export specs/resnet18.net -f pt2 -o resnet18.pt2
      netdsl export specs/mnist.net -f onnx -w runs/LeNet-20250101-120000/weights.pt
      netdsl export specs/char_lm.net -f safetensors -o char_lm.safetensors
      netdsl eval specs/mnist.net --weights LeNet.safetensors
    """
    from ..spec import load
    from ..targets.export import export_spec

    s = load(spec)
    result = export_spec(s, fmt, output, model=model, weights=weights, opset=opset, seed=seed)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.report())
