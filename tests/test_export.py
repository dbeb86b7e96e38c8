"""`netdsl export` (issue 12): pt2, ONNX and safetensors files whose dynamic dimensions are the
spec's, proven against the live module before they are written.

Every exported file here is read back the way a user reads it (torch.export.load, ONNX
Runtime, safetensors) and fed sizes other than the traced example's: the batch, and every
declared dimension at sizes the spec admits. Weights are randomised first (default inits can
hide a wrong mapping). A file that torch would make static, a damaged safetensors file, a
missing optional package and Ctrl-C mid-export are errors that leave no file behind.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.diagnostics import NetdslError
from netdsl.targets import export as ex
from netdsl.weightfile import load_state, read_safetensors

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

SHARED = """\
model Tied {
  input tokens: [T] int64 where T <= 32
  wte = Embedding(50, 16)
  h = tokens -> wte -> LayerNorm
  logits = h -> Linear(50, bias=false, weight=wte.weight) as head
  output logits
}
"""


def randomised(spec, model=None, seed=3):
    torch.manual_seed(seed)
    module = spec.build(model).eval()
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.2 + (1.0 if t.dim() == 1 else 0.0))
    return module


def outputs(module, args):
    with torch.no_grad():
        out = module(*args)
    return out if isinstance(out, (tuple, list)) else (out,)


def close(a, b, atol=1e-5, rtol=1e-5):
    for x, y in zip(a, b, strict=True):
        y = torch.as_tensor(y)
        assert x.shape == y.shape
        assert (x - y).abs().max() <= atol + rtol * x.abs().max()


# specs, and sizes other than the example's (batch 2, each dimension's "typical" size)
PT2_CASES = {
    "mnist": [{"batch": 7}],
    "multitask": [{"batch": 3}],
    "siamese": [{"batch": 6}],
    "image_and_table": [{"batch": 4}],
    "segmentation": [{"batch": 3, "H": 12, "W": 20}, {"batch": 1, "H": 8, "W": 44}],
    "char_lm": [{"batch": 3, "T": 7}, {"batch": 1, "T": 128}],
    "transformer_classifier": [{"batch": 3, "T": 9}, {"batch": 1, "T": 2}],
}


@pytest.mark.parametrize("name", sorted(PT2_CASES))
def test_pt2_keeps_every_dimension_dynamic(name, tmp_path):
    spec = netdsl.load(SPECS / f"{name}.net")
    graph = spec.graph()
    module = randomised(spec)
    path = tmp_path / f"{name}.pt2"
    result = ex.export_module(module, graph, "pt2", path)
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert [c.label for c in result.checks] == ["smallest", "typical", "largest"]
    assert set(result.dynamic) == {"batch", *(d.name for d in graph.dims)}
    loaded = torch.export.load(path).module()
    for i, sizes in enumerate(PT2_CASES[name]):
        args = ex.example_inputs(graph, sizes, seed=40 + i)
        close(outputs(module, args), outputs(loaded, args))


def test_pt2_of_a_torchvision_sized_net_takes_any_image_from_32(tmp_path):
    spec = netdsl.load(SPECS / "resnet18.net")
    module = randomised(spec)
    path = tmp_path / "r.pt2"
    result = ex.export_module(module, spec.graph(), "pt2", path)
    assert result.checks[0].sizes == {"batch": 1, "H": 32, "W": 32}
    loaded = torch.export.load(path).module()
    args = (torch.randn(2, 3, 45, 33),)  # odd sizes, neither traced nor checked
    close(outputs(module, args), outputs(loaded, args), atol=1e-4, rtol=1e-4)
    with pytest.raises(Exception):  # noqa: B017 -- torch's own refusal of an inadmissible size
        loaded(torch.randn(1, 3, 31, 40))


def test_onnx_axes_are_named_after_the_spec(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec = netdsl.load(SPECS / "char_lm.net")
    module = randomised(spec)
    path = tmp_path / "lm.onnx"
    result = ex.export_module(module, spec.graph(), "onnx", path)
    assert result.opset and result.opset >= 18
    proto = onnx.load(str(path))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in [*proto.graph.input, *proto.graph.output]}
    assert dims["tokens"] == ["batch", "T"]
    assert dims["logits"][:2] == ["batch", "T"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for sizes in ({"batch": 3, "T": 5}, {"batch": 1, "T": 100}):
        args = ex.example_inputs(spec.graph(), sizes, seed=9)
        theirs = session.run(None, {"tokens": args[0].numpy()})
        close(outputs(module, args), theirs, atol=1e-4, rtol=1e-4)


def test_onnx_of_a_symbolic_conv_net_and_a_multi_output_net(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    for name, sizes in (("segmentation", {"batch": 2, "H": 28, "W": 12}),
                        ("multitask", {"batch": 5})):
        spec = netdsl.load(SPECS / f"{name}.net")
        module = randomised(spec)
        path = tmp_path / f"{name}.onnx"
        ex.export_module(module, spec.graph(), "onnx", path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        args = ex.example_inputs(spec.graph(), sizes, seed=2)
        feed = {n.name: a.numpy() for n, a in zip(spec.graph().inputs, args, strict=True)}
        names = [o.name for o in session.get_outputs()]
        assert names == [o.name for o in spec.graph().outputs]
        close(outputs(module, args), session.run(None, feed), atol=1e-4, rtol=1e-4)


def test_safetensors_round_trip_with_shared_weights(tmp_path):
    pytest.importorskip("safetensors")
    spec = netdsl.loads(SHARED, "tied.net")
    module = randomised(spec)
    path = tmp_path / "tied.safetensors"
    ex.export_module(module, spec.graph(), "safetensors", path)
    state, meta = read_safetensors(path)
    assert list(state) == list(module.state_dict())
    for k, v in module.state_dict().items():
        assert torch.equal(state[k], v)
    twin = spec.build()
    twin.load_state_dict(load_state(path))
    args = ex.example_inputs(spec.graph(), {"batch": 2, "T": 11})
    close(outputs(module, args), outputs(twin, args), atol=0, rtol=0)
    assert meta["netdsl.model"] == "Tied" and "netdsl.crc32" in meta


def test_a_damaged_safetensors_file_names_its_tensor(tmp_path):
    pytest.importorskip("safetensors")
    spec = netdsl.load(SPECS / "mlp.net")
    path = tmp_path / "mlp.safetensors"
    ex.export_module(randomised(spec), spec.graph(), "safetensors", path)
    _, meta = read_safetensors(path)
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    info = json.loads(data[8 : 8 + header])
    name = next(k for k in info if k != "__metadata__" and "weight" in k)
    start = 8 + header + info[name]["data_offsets"][0]
    data[start + 5] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(NetdslError) as err:
        load_state(path)
    text = str(err.value)
    assert "E409" in text and f"tensor {name}" in text and "CRC-32" in text


def test_export_with_trained_weights_and_eval_of_the_safetensors(tmp_path, monkeypatch, cli):
    pytest.importorskip("safetensors")
    spec_file = tmp_path / "net.net"
    spec_file.write_text("""\
model Net {
  input x: [8]
  x -> Linear(16) -> ReLU -> Linear(3) -> logits
  output logits
}
train Net {
  data = synthetic(shape=8, num_classes=3, n=128, n_test=64)
  batch_size = 32
  epochs = 1
  seed = 2
}
""", encoding="utf-8")
    from netdsl.runtime import runner

    run = runner.run(netdsl.load(spec_file), out=tmp_path / "runs", progress=False)
    folder = Path(run["run_dir"])
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["export", spec_file, "-f", "safetensors", "-w", folder / "weights.pt",
                          "-o", "net.safetensors"])
    assert code == 0, err
    assert "wrote net.safetensors" in out and "identical" in out
    code, out, err = cli(["export", spec_file, "-f", "pt2", "-w",
                          folder / "checkpoints" / "last.pt", "--json"])
    assert code == 0, err
    assert json.loads(out)["path"] == "Net.pt2" and (tmp_path / "Net.pt2").is_file()
    a = netdsl.evaluate(spec_file, folder / "weights.pt")
    b = netdsl.evaluate(spec_file, tmp_path / "net.safetensors")
    assert a["metrics"] == b["metrics"]


def test_a_size_torch_would_fix_is_refused_and_nothing_is_written(tmp_path):
    """A module that only works at one length of a dimension the spec declares dynamic."""
    spec = netdsl.loads("model M {\n  input x: [T] where T <= 64\n  x -> Linear(1) -> y\n"
                        "  output y\n}\n".replace("x -> Linear(1)", "x -> Softmax(1)"), "m.net")

    class FromSixteen(torch.nn.Module):  # T >= 16 only: torch.export narrows T
        def forward(self, x):
            return x[:, :16].reshape(x.shape[0], 4, 4).sum(-1)

    path = tmp_path / "m.pt2"
    with pytest.raises(NetdslError) as err:
        ex.export_module(FromSixteen(), spec.graph(), "pt2", path)
    assert "E506" in str(err.value) and "would fix a dynamic size" in str(err.value)
    assert "T = L['x'].size()[1]" in str(err.value)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_missing_extra_is_named(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_onnx(name, *args):
        if name.split(".")[0] in ("onnx", "onnxruntime", "onnxscript"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnx)
    spec = netdsl.load(SPECS / "mlp.net")
    with pytest.raises(NetdslError) as err:
        ex.export_module(spec.build(), spec.graph(), "onnx", tmp_path / "m.onnx")
    assert "E507" in str(err.value) and "netdsl[export]" in str(err.value)
    assert not list(tmp_path.iterdir())



def test_cli_errors_are_located_lines(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["export", SPECS / "mlp.net", "-f", "pt2", "-w", "nope.pt"])
    assert code == 1 and "error[E501]" in err and "nope.pt" in err
    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    code, _, err = cli(["export", SPECS / "mlp.net", "-f", "pt2", "-w", "junk.pt"])
    assert code == 1 and "error[E409]" in err
    code, _, err = cli(["export", SPECS / "mlp.net", "-f", "pt2", "-o", "no/such/dir/m.pt2"])
    assert code == 1 and "error[E501]" in err and "does not exist" in err
    code, _, err = cli(["export", SPECS / "mlp.net", "-f", "tflite"])
    assert code == 2 and "tflite" in err
    assert not [p for p in tmp_path.iterdir() if p.name != "junk.pt"]


def test_help_lists_export_and_says_why_no_torchscript(cli):
    code, out, _ = cli(["--help"])
    assert code == 0 and "export" in out
    code, out, _ = cli(["export", "--help"])
    text = " ".join(out.split())
    assert code == 0 and "TorchScript is deprecated" in text and "netdsl export" in text


def test_ctrl_c_while_exporting_leaves_nothing(tmp_path):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "netdsl", "export", str(SPECS / "resnet18.net"),
                             "-f", "pt2", "-o", "r.pt2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".r.pt2.*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "interrupted"
    assert list(tmp_path.iterdir()) == []


def test_report_prints_sizes_and_tolerance():
    r = ex.ExportResult("m.onnx", "onnx", "M", {"batch": "1..65536", "T": "1..64"},
                        [ex.Check("smallest", {"batch": 1, "T": 1}, 1e-7, 2.0)],
                        tolerance=(1e-4, 1e-4), opset=20)
    text = r.report()
    assert "ONNX opset 20" in text and "batch 1..65536, T 1..64" in text
    assert "smallest batch=1, T=1" in text and "1.00e-07" in text
    buf = io.StringIO(json.dumps(r.to_dict()))
    assert json.load(buf)["checks"][0]["sizes"] == {"batch": 1, "T": 1}


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "vit_b_16"])
def test_zoo_pt2_takes_sizes_it_was_not_traced_at(name, tmp_path):
    spec = netdsl.load(SPECS / f"{name}.net")
    module = randomised(spec)
    path = tmp_path / f"{name}.pt2"
    ex.export_module(module, spec.graph(), "pt2", path)
    loaded = torch.export.load(path).module()
    size = 224 if name == "vit_b_16" else 72
    args = (torch.randn(3, 3, size, size + (0 if name == "vit_b_16" else 24)),)
    close(outputs(module, args), outputs(loaded, args), atol=1e-4, rtol=1e-4)


def test_onnx_of_resnet18_in_onnx_runtime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec = netdsl.load(SPECS / "resnet18.net")
    module = randomised(spec)
    path = tmp_path / "r.onnx"
    ex.export_module(module, spec.graph(), "onnx", path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 41, 57)
    close(outputs(module, (x,)), session.run(None, {"image": x.numpy()}), atol=1e-4, rtol=1e-4)


def test_a_range_torch_narrows_is_named_with_what_it_keeps(tmp_path):
    """ConvNeXt-T takes any image from 32x32, but torch 2.x's program only from 64x64."""
    spec = netdsl.load(SPECS / "convnext_tiny.net")
    with pytest.raises(NetdslError) as err:
        ex.export_module(spec.build(), spec.graph(), "pt2", tmp_path / "c.pt2")
    text = str(err.value)
    assert "E506" in text and "H >= 64 (the spec declares H >= 32)" in text
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS.glob("*.net")
                                        if p.stem not in ("gpt2",)))  # gpt2: 124M, 35 s
def test_safetensors_of_every_spec(name, tmp_path):
    pytest.importorskip("safetensors")
    spec = netdsl.load(SPECS / f"{name}.net")
    module = randomised(spec)
    path = tmp_path / f"{name}.safetensors"
    result = ex.export_module(module, spec.graph(), "safetensors", path)
    assert all(c.max_diff == 0 for c in result.checks)
    state = load_state(path)
    assert list(state) == list(module.state_dict())
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())
