"""`netdsl render`: a model's architecture diagram (SVG, PNG, PDF or DOT) through graphviz."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("render")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", metavar="FILE",
              help="Where to write (`-` for standard output). The extension picks the format: "
                   ".svg, .png, .pdf, .dot or .gv. Default: the spec's name with .svg (or with "
                   "--format's extension), in the current directory.")
@click.option("-m", "--model", help="Which model of the spec (default: the first one).")
@click.option("-f", "--format", "fmt", metavar="svg|png|pdf|dot",
              help="Output format, whatever the extension of -o.")
@click.option("--expand", "expand", multiple=True, metavar="all|none|BLOCK",
              help="Which blocks to draw with their insides (as clusters): all (default), none "
                   "(each block is one node with its parameter count; repeated blocks become one "
                   "node marked ×N), or block names (Basic: every instance) and instance names "
                   "(basic3). Repeat the option or separate names with commas.")
@click.option("--direction", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB",
              metavar="TB|LR", help="Top to bottom (default) or left to right.")
@click.option("--no-shapes", is_flag=True, help="Leave tensor shapes off the edges.")
@click.option("--no-legend", is_flag=True, help="Leave the colour legend out of the title.")
def render_command(spec, output, model, fmt, expand, direction, no_shapes, no_legend):
    """Draw a model: layers with their key arguments and parameter counts, tensor shapes on the
    edges, blocks as labelled clusters or as single nodes.

    Layer families (conv, norm, activation, pooling, linear, recurrent, merge, ...) have their
    own colours; the legend under the title says which. The title carries the model's name and
    its total and trainable parameters. Inputs are bold ellipses, outputs double ellipses,
    collapsed blocks 3-D boxes.

    SVG, PNG and PDF need graphviz's `dot` program; DOT output does not. The file is written
    whole or not at all.

    \b
    Examples:
      netdsl render specs/lenet.net                       # writes lenet.svg
      netdsl render specs/resnet18.net -o resnet18.png --expand none
      netdsl render specs/resnet18.net -o r18.pdf --expand basic3,basic4
      netdsl render specs/multitask.net -o mt.svg --direction LR --no-shapes
      netdsl render specs/lenet.net -o - --format dot | dot -Tpng > lenet.png
    """
    from ..spec import load
    from ..targets.diagram import render
    from ..targets.diagram_output import output_format, save, to_bytes, unwritable

    fmt = fmt.lower() if fmt else None
    if output == "-":  # standard output: DOT unless --format says otherwise
        fmt = output_format(None, fmt) if fmt else "dot"
        if fmt in ("png", "pdf") and sys.stdout.isatty():
            raise unwritable(f"will not write {fmt} to a terminal", "redirect it: `> diagram.png`")
    else:
        output = output or Path(spec).stem + "." + (fmt or "svg")
        fmt = output_format(output, fmt)
    s = load(spec)
    if model is None and len(s.model_names) > 1:
        click.echo(f"note: {spec} defines {', '.join(s.model_names)}; drawing {s.model_names[0]} "
                   "(choose another with --model)", err=True)
    diagram = render(s, model, expand=list(expand) or "all", direction=direction.upper(),
                     shapes=not no_shapes, legend=not no_legend)
    if output == "-":
        data = to_bytes(diagram, fmt)
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:  # a text-only stdout (e.g. under a test runner)
            click.echo(data.decode("utf-8", "replace"), nl=False)
        else:
            stream.write(data)
            stream.flush()
        return
    path = save(diagram, output, fmt)
    click.echo(f"wrote {path} ({fmt}, model {s.graph(model).name})")
