"""The command line: a thin layer over the Python API. Commands load lazily, so `netdsl check`
never imports torch."""

from __future__ import annotations

import os
import signal
import sys
import threading


def _interrupted_at_once(signum, frame):
    """Ctrl-C outside training: stop now, in one line, exit status 130. An exception is not
    safe to raise here: unwinding an import half way (torch's above all) can abort the
    interpreter at exit, or fail the next import of the same module."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a flush interrupted inside a write: nothing to save
        pass
    fileio = sys.modules.get("netdsl.fileio")
    for path in list(getattr(fileio, "PENDING", ())):  # nothing half-written left behind
        try:
            os.unlink(path)
        except OSError:
            pass
    os.write(2, b"interrupted\n")
    os._exit(130)


def _take_ctrl_c():
    """Make Ctrl-C stop at once (training installs its own graceful handler on top); returns
    the handler to give back, or None where signals cannot be handled (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGINT, _interrupted_at_once)
    except (ValueError, OSError):
        return None


# As the program itself (`netdsl ...`, `python -m netdsl ...`), from the first line that netdsl
# runs: before click, pydantic, lark and torch are imported.
_ARGV0 = sys.argv[0] if sys.argv else ""
_AS_PROGRAM = os.path.basename(_ARGV0) == "netdsl" or \
    _ARGV0.endswith(os.path.join("netdsl", "__main__.py"))
if _AS_PROGRAM:
    _take_ctrl_c()

import errno  # noqa: E402
import importlib  # noqa: E402
import traceback  # noqa: E402

import click  # noqa: E402

from .._version import __version__
from ..diagnostics import NetdslError, printable, use_color
from ._allow import allow_layer_option, with_allow_layer

# command name -> module under netdsl.cli defining a click command called `command`
COMMANDS = {
    "check": "check",
    "summary": "summary",
    "run": "run",
    "eval": "run",
    "compile": "compile",
    "render": "render",
    "export": "export",
    "import": "imports",
    "fmt": "fmt",
    "lsp": "lsp",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [c for c in COMMANDS if self._module(c) is not None]

    def _module(self, name):
        try:
            return importlib.import_module(f"netdsl.cli.{COMMANDS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name == f"netdsl.cli.{COMMANDS[name]}":
                return None
            raise

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod = self._module(name)
        return with_allow_layer(getattr(mod, f"{name}_command", None) if mod else None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="netdsl")
def cli():
    """netdsl: networks, their training and their pictures from one short `.net` file.

    \b
    Examples:
      netdsl check specs/*.net
      netdsl summary specs/lenet.net
      netdsl run specs/mnist.net --data-root ../shared/data
      netdsl compile specs/lenet.net -o lenet.py
      netdsl render specs/resnet18.net -o resnet18.svg
      netdsl export specs/resnet18.net -f onnx -o resnet18.onnx
      netdsl import torchvision.models:resnet18 -o resnet18.net
      netdsl fmt specs/

    Run `netdsl COMMAND --help` for a command's options and examples.
    """


cli.params.append(allow_layer_option(envvar="NETDSL_ALLOW_LAYERS"))


def fail(exc: NetdslError) -> None:
    """Print diagnostics to stderr and exit 1."""
    click.echo(exc.format(color=use_color(sys.stderr)), err=True)
    sys.exit(1)


class Shown:
    """A text stream whose writes pass through `diagnostics.printable`: a control character in
    a file name, an option value or a spec's string is shown, never acted on by the terminal.
    Everything else (isatty, buffer, encoding, flush) is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text, colours=True))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> None:
    """Entry point: spec mistakes exit 1 with diagnostics; anything else is a bug, said as one.
    What it prints goes through `Shown`."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Shown(out), Shown(err)
    previous = _take_ctrl_c()
    try:
        _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err
        if previous is not None:  # a caller in the same process gets its own back
            signal.signal(signal.SIGINT, previous)
        if _AS_PROGRAM:  # the process ends here: spare the collector's last pass over a
            import gc  # large spec's objects (0.4 s for 20,000 statements)

            gc.freeze()


def _main(argv) -> None:
    try:
        cli.main(args=argv, prog_name="netdsl", standalone_mode=False)
        sys.stdout.flush()  # a full device says so here, not at interpreter exit
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise_internal(exc)
        _quiet_stdout()
        click.echo(f"netdsl: error[E410]: cannot write the output: {os.strerror(exc.errno).lower()}",
                   err=True)
        sys.exit(1)
    except NetdslError as exc:
        fail(exc)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        raise_internal(exc)


def raise_internal(exc: BaseException) -> None:
    """E900: a bug in netdsl, said as one line (the traceback with NETDSL_DEBUG=1)."""
    click.echo(f"netdsl: internal error[E900]: {type(exc).__name__}: {exc}\n"
               "This is a bug in netdsl, not in your spec. Please report it with the spec that "
               "caused it (set NETDSL_DEBUG=1 for the traceback).", err=True)
    if os.environ.get("NETDSL_DEBUG"):
        traceback.print_exception(exc)
    sys.exit(70)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered does not fail again at exit."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
