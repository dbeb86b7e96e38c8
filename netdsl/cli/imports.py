"""`netdsl import`: an existing PyTorch model as a `.net` spec (netdsl/importer.py)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import click


@click.command("import")
@click.argument("target", metavar="MODULE:FACTORY")
@click.option("-o", "--output", metavar="FILE",
              help="Write the spec here (default: standard output). The names that had to "
                   "change go beside it in FILE's stem + .keys.json.")
@click.option("--arg", "args", multiple=True, metavar="NAME=VALUE",
              help="A keyword argument for FACTORY, a Python literal (num_classes=10); repeatable.")
@click.option("--input", "input_shape", metavar="SHAPE",
              help="The first input's shape without the batch, such as 3,224,224 (default: read "
                   "off the first layer, with named sizes where the layers take any).")
@click.option("--name", help="The model's name in the spec (default: the module's class).")
@click.option("--save-weights", metavar="FILE",
              help="Also write the model's weights under the spec's names (.pt, or "
                   ".safetensors with the export extra), for `netdsl eval --weights`.")
def import_command(target, output, args, input_shape, name, save_weights):
    """Write the PyTorch model that MODULE:FACTORY makes as a spec a person would write.

    FACTORY is a class or function in the Python module MODULE (imported as `python` would,
    with the current directory on the path: this runs that module's code), called with the
    --arg values, or an `nn.Module` object there. Layers keep their names; submodules of one
    structure become one `block` whose differing numbers are its parameters; inputs get named
    sizes where the layers take any size, with the `where` clause that `netdsl check` proves.

    The spec is proven before it is written: its parameter count equals the model's, and with
    the model's (randomised) weights loaded through the spec's names its outputs are the
    model's. What netdsl cannot express (a function outside its vocabulary, control flow on
    tensor values) is an error naming the module and the operation.

    \b
    Examples:
      netdsl import torchvision.models:resnet18 -o resnet18.net
      netdsl import torchvision.models:resnet50 --arg num_classes=10 -o resnet50.net
      netdsl import mymodels:Net --input 1,28,28 -o net.net --save-weights net.pt
    """
    from ..diagnostics import Diagnostic, NetdslError
    from ..importer import import_module

    module = _make(target, args)
    result = import_module(module, name=name, input_shape=input_shape)
    keys = None
    if output is None or output == "-":
        click.echo(result.text, nl=False)
    else:
        from ..fileio import WriteError, write_whole

        path = Path(output)
        try:
            write_whole(path, result.text.encode("utf-8"))
            if result.key_map:
                keys = path.with_name(path.stem + ".keys.json")
                write_whole(keys, (json.dumps(result.key_map, indent=1) + "\n").encode())
        except WriteError as exc:
            raise NetdslError([Diagnostic("E501", f"cannot write {output}: {exc}")]) from None
    if save_weights:
        _save_weights(module, result, Path(save_weights))
    renamed = (f"; {len(result.key_map)} state_dict keys renamed"
               + (f" ({keys})" if keys else " (-o FILE writes them beside the spec)")
               if result.key_map else "; the same state_dict keys")
    where = f"wrote {output}: " if output not in (None, "-") else ""
    click.echo(f"{where}{result.model}, {result.params:,} parameters; outputs equal to the "
               f"original's (max |diff| {result.max_diff:.2g}){renamed}", err=True)


def _make(target: str, args):
    """The module MODULE:FACTORY(**args) makes."""
    import importlib

    from ..diagnostics import Diagnostic, NetdslError

    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr.isidentifier():
        raise click.BadParameter(f"{target!r}: write MODULE:FACTORY, such as "
                                 "torchvision.models:resnet18", param_hint="MODULE:FACTORY")
    kwargs = {}
    for a in args:
        key, eq, value = a.partition("=")
        if not eq or not key.isidentifier():
            raise click.BadParameter(f"{a!r}: write NAME=VALUE", param_hint="--arg")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word: a string
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        found = importlib.import_module(module_name)
    except ImportError as exc:
        raise NetdslError([Diagnostic("E508", f"cannot import {module_name}: {exc}")]) from None
    if not hasattr(found, attr):
        from ..diagnostics import did_you_mean

        raise NetdslError([Diagnostic("E508", f"{module_name} has no '{attr}'", hint=did_you_mean(
            attr, [n for n in dir(found) if not n.startswith("_")]))])
    import torch

    obj = getattr(found, attr)
    if isinstance(obj, torch.nn.Module):
        if kwargs:
            raise click.BadParameter(f"{target} is a module, not a factory", param_hint="--arg")
        return obj
    try:
        made = obj(**kwargs)
    except Exception as exc:  # noqa: BLE001 -- the user's factory: its own words
        raise NetdslError([Diagnostic("E508", f"{target}({', '.join(args)}) failed: "
                                      f"{type(exc).__name__}: {exc}")]) from None
    if not isinstance(made, torch.nn.Module):
        raise NetdslError([Diagnostic("E508", f"{target} made a {type(made).__name__}, not an "
                                      "nn.Module")])
    return made


def _save_weights(module, result, path: Path) -> None:
    """The model's own state_dict under the spec's names."""
    import io

    import torch

    from ..diagnostics import Diagnostic, NetdslError
    from ..fileio import WriteError, write_whole
    from ..weightfile import is_safetensors, safetensors_bytes

    theirs = module.state_dict()
    back = {v: k for k, v in result.key_map.items()}
    state = {back.get(k, k): t for k, t in theirs.items()}
    if is_safetensors(path):
        data = safetensors_bytes(state, {"netdsl.model": result.model})
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    try:
        write_whole(path, data)
    except WriteError as exc:
        raise NetdslError([Diagnostic("E501", f"cannot write {path}: {exc}")]) from None
