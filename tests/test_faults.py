"""Data and environment faults are clean errors, never an internal error (issue 17): labels
outside the model's classes (E412), damaged data files (E414), device indices torch cannot
take (E411), models too large for memory (W311, E413); and a scan of a corpus of damaged
datasets, generated here, through `netdsl run`."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mnist_data import DATA

import netdsl
from netdsl.cli import main
from netdsl.memory import training_estimate
from netdsl.runtime.catalog import OPTIMIZERS
from netdsl.runtime.checks import label_problem
from netdsl.runtime.data import (
    DamagedFileError,
    DeviceError,
    LabelError,
    check_labels,
    load_data,
    resolve_device,
)

ROOT = Path(__file__).resolve().parents[1]
RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")


def cli(args, monkeypatch, capsys, cwd: Path) -> tuple[int, str]:
    """`netdsl ARGS` in this process: (exit status, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
        raise SystemExit(0)
    return exit_info.value.code or 0, capsys.readouterr().err


def clean(code: int, err: str) -> None:
    assert "E900" not in err and "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 1), (code, err)


# ---- small synthetic datasets ---------------------------------------------------------------
def idx(kind: str, n: int, labels=None, seed: int = 0) -> bytes:
    """A well-formed MNIST IDX file: n 28x28 images, or n labels (0..9, or `labels`)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        body = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        return struct.pack(">IIII", 0x803, n, 28, 28) + body.numpy().tobytes()
    ys = list(labels) if labels is not None else [i % 10 for i in range(n)]
    return struct.pack(">II", 0x801, len(ys)) + bytes(ys)


def mnist(root: Path, n: int = 48, n_test: int = 16, **files: bytes) -> Path:
    """MNIST/raw under `root`; `files` replace some (by name without -idxN-ubyte, e.g.
    train_images=b"...")."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    default = {RAW[0]: idx("image", n), RAW[1]: idx("label", n), RAW[2]: idx("image", n_test, seed=1),
               RAW[3]: idx("label", n_test)}
    for name, blob in default.items():
        key = "_".join(name.split("-")[:2])
        (raw / name).write_bytes(files.get(key, blob))
    return root


MLP = """\
model MLP {{
  input x: [1, 28, 28]
  x -> Flatten -> Linear(32) -> ReLU -> Linear({classes}) -> logits
  output logits
}}
train MLP {{
  data = {data}
  loss = {loss}
  batch_size = 16
  epochs = 1
  device = "cpu"
}}
"""


def spec(tmp: Path, data: str, loss: str = "CrossEntropyLoss(logits, label)", classes: int = 10,
         shape: str = "[1, 28, 28]", name: str = "m.net") -> Path:
    text = MLP.format(data=data, loss=loss, classes=classes).replace("[1, 28, 28]", shape)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_file(path: Path, labels, features: int = 2) -> Path:
    rows = ["," .join([f"f{i}" for i in range(features)] + ["label"])]
    rows += [",".join([f"{(i * 7 + j) % 5 / 5}" for j in range(features)] + [str(v)])
             for i, v in enumerate(labels)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def image_folder(root: Path, classes: int, per_class: int = 2) -> Path:
    from PIL import Image

    for c in range(classes):
        (root / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (28, 28), 10 * c + i).save(root / f"c{c:02d}" / f"{i}.png")
    return root


# ---- row 1: labels outside the model's classes (E412) ---------------------------------------
@pytest.mark.parametrize("bad", [10, 200])
def test_an_mnist_label_outside_the_models_classes_is_e412_before_the_first_step(
        bad, tmp_path, monkeypatch, capsys):
    labels = [i % 10 for i in range(48)]
    labels[17] = bad
    mnist(tmp_path / "data", train_labels=idx("label", 48, labels))
    path = spec(tmp_path, 'MNIST(root="data")')
    code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and "error[E412]" in err, err
    first = err.splitlines()[0]
    assert "train-labels-idx1-ubyte holds labels 0.." + str(bad) in first
    assert "'logits' has 10 classes (0..9) for CrossEntropyLoss" in first
    assert f"the first is {bad} (sample 17)" in first
    assert f"Linear({bad + 1})" in err  # what to do
    assert not (tmp_path / "runs").exists()  # refused when loading, before any run folder


def test_labels_are_checked_for_every_source(tmp_path, monkeypatch, capsys):
    csv = csv_file(tmp_path / "t.csv", [0, 1, 2, 12, 1, 0])
    folder = image_folder(tmp_path / "images", classes=12)
    cases = {
        "CSV": (f'CSV(path="{csv}", targets="label")', "[2]", "t.csv holds labels 0..12"),
        "ImageFolder": (f'ImageFolder(path="{folder}", convert="L")', "[1, 28, 28]",
                        "holds labels 0..11"),
        "tensors": ("tensors(X=[[0, 1], [1, 0], [1, 1]], y=[0, 3, 10])", "[2]",
                    "y holds labels 0..10"),
    }
    for source, (data, shape, words) in cases.items():
        path = spec(tmp_path, data, shape=shape, name=f"{source}.net")
        code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
        assert code == 1 and "error[E412]" in err and words in err, (source, err)


def test_cifar10_labels_are_checked(tmp_path, monkeypatch):
    import numpy as np
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch"):
        batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [1, 7 if name[-1] != "3"
                                                                          else 42]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    rule = {"output": "logits", "loss": "CrossEntropyLoss", "classes": 10, "ignore_index": -100,
            "binary": False}
    with pytest.raises(LabelError, match=r"cifar-10-batches-py holds labels 1..42, but 'logits'"):
        load_data("CIFAR10", root=tmp_path, label_check=[rule])
    with pytest.raises(LabelError, match="CIFAR10 has 10 classes"):  # without a model too
        load_data("CIFAR10", root=tmp_path)


@pytest.mark.parametrize("loss,classes,labels,words", [
    ("NLLLoss(logits, label)", 3, [0, 1, 3], "'logits' has 3 classes (0..2) for NLLLoss"),
    ("CrossEntropyLoss(logits, label, label_smoothing=0.1)", 3, [0, 5, 1],
     "for CrossEntropyLoss"),
    ("BCEWithLogitsLoss(logits, label)", 1, [0, 1, 2], "BCEWithLogitsLoss trains 0/1 labels"),
    ("BCELoss(logits, label)", 1, [1, 0, 2], "BCELoss trains 0/1 labels"),
], ids=["nll", "ce", "bce_logits", "bce"])
def test_every_classification_loss_checks_labels(loss, classes, labels, words, tmp_path,
                                                 monkeypatch, capsys):
    csv = csv_file(tmp_path / "t.csv", labels * 2)
    path = spec(tmp_path, f'CSV(path="{csv}", targets="label")', loss, classes, "[2]")
    code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and "error[E412]" in err and words in err, err


def test_negative_labels_unless_they_are_the_losses_ignore_index(tmp_path, monkeypatch, capsys):
    csv = csv_file(tmp_path / "t.csv", [0, 1, -1, 2, 1, -1, 0, 2])
    path = spec(tmp_path, f'CSV(path="{csv}", targets="label")', classes=3, shape="[2]")
    code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and "error[E412]" in err and "holds labels -1..2" in err
    assert "CrossEntropyLoss(ignore_index=-1)" in err  # the way out the loss offers
    path = spec(tmp_path, f'CSV(path="{csv}", targets="label")',
                "CrossEntropyLoss(logits, label, ignore_index=-1)", 3, "[2]")
    code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 0, err
    with pytest.raises(LabelError, match="class labels must be >= 0"):  # no loss: no way out
        load_data("CSV", path=str(csv), targets="label")


def test_spec_labels_are_checked_by_check_with_the_words_of_the_runtime_check():
    text = MLP.format(data="tensors(X=[[0, 1], [1, 0], [1, 1]], y=[0, 3, 10])",
                      loss="CrossEntropyLoss(logits, label)", classes=10).replace(
        "[1, 28, 28]", "[2]")
    with pytest.raises(netdsl.NetdslError) as exc:
        netdsl.loads(text, "t.net")
    (d,) = exc.value.diagnostics
    assert d.code == "E412" and d.span.source.line(d.span.line).strip().startswith("data =")
    rules = [{"output": "logits", "loss": loss, "classes": n, "ignore_index": ignore,
              "binary": binary} for loss, n, ignore, binary in
             (("CrossEntropyLoss", 10, -100, False), ("NLLLoss", 4, -1, False),
              ("BCELoss", 2, None, True))]
    for rule in rules:
        for labels in ([0, 3, 10], [-1, 2, 1], [-7, -7, 0], [1, 2]):
            want = label_problem(labels, "y", rule)
            try:
                check_labels([(torch.tensor(labels), "y")], [rule])
                got = None
            except LabelError as e:
                got = (e.message, e.hint)
            assert got == want, (rule, labels)


def test_the_compiled_script_gives_the_label_error_too(tmp_path, capsys):
    from netdsl.targets.compile import compile_spec

    csv = csv_file(tmp_path / "t.csv", [0, 1, 2, 7])
    path = spec(tmp_path, f'CSV(path="{csv}", targets="label")', classes=3, shape="[2]")
    file = tmp_path / "m.py"
    file.write_text(compile_spec(path), encoding="utf-8")
    mod_spec = importlib.util.spec_from_file_location("compiled_m", file)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules["compiled_m"] = mod  # its dataclasses look their module up
    try:
        mod_spec.loader.exec_module(mod)
    finally:
        del sys.modules["compiled_m"]
    with pytest.raises(SystemExit) as exc:
        mod.main(["--out", str(tmp_path / "out")])
    text = str(exc.value.code)
    assert text.startswith("error: ") and "t.csv holds labels 0..7" in text, text
    assert "hint: fix the labels" in text
    with pytest.raises(SystemExit) as exc:
        mod.main(["--device", "cuda:99999999999999999999"])
    assert "device index out of range" in str(exc.value.code)


# ---- row 2: damaged MNIST files (E414) --------------------------------------------------------
def _gz_garbage() -> bytes:
    whole = gzip.compress(idx("image", 48))
    return whole[: len(whole) // 2]


DAMAGED_MNIST = {  # name: (files, words in the message)
    "wrong_magic": ({"train_images": b"\x00\x00\x08\x05" + idx("image", 48)[4:]},
                    "this is not an MNIST image file (magic number 0x00000805"),
    "text": ({"train_images": b"<html><body>Not Found</body></html>\n" * 20},
             "this is not an MNIST image file"),
    "swapped": ({"train_images": idx("label", 48), "train_labels": idx("image", 48)},
                "are the image and label files swapped?"),
    "label_magic": ({"t10k_labels": b"\x00\x00\x08\x03" + idx("label", 16)[4:]},
                    "this is not an MNIST label file"),
    "empty": ({"train_images": b""}, "this is not an MNIST image file: it holds 0 byte(s)"),
    "header_only": ({"train_labels": b"\x00\x00\x08\x01\x00"}, "shorter than the 8-byte header"),
    "truncated": ({"train_images": idx("image", 48)[:5000]}, "truncated: 5,000 bytes"),
    "extra_bytes": ({"t10k_images": idx("image", 16) + b"\x00" * 100},
                    "100 bytes more than the 16 images"),
    "count_mismatch": ({"train_labels": idx("label", 47)}, "holds 48 images but"),
    "no_images": ({"t10k_images": struct.pack(">IIII", 0x803, 0, 28, 28)}, "holds no images"),
    "wrong_size": ({"train_images": struct.pack(">IIII", 0x803, 2, 32, 32) + bytes(2048)},
                   "holds 32x32 images; MNIST images are 28x28"),
    "gzip_garbage": ({"train_images": _gz_garbage()}, "gzip-compressed but does not decompress"),
    "huge_header": ({"train_images": struct.pack(">IIII", 0x803, 2**31, 28, 28) + bytes(100)},
                    "its header promises 2,147,483,648 images"),
}


@pytest.mark.parametrize("case", list(DAMAGED_MNIST), ids=str)
def test_damaged_mnist_files_are_e414_naming_the_file(case, tmp_path):
    files, words = DAMAGED_MNIST[case]
    mnist(tmp_path, **files)
    with pytest.raises(DamagedFileError) as exc:
        load_data("MNIST", root=tmp_path)
    assert exc.value.code == "E414" and words in exc.value.message, exc.value.message
    assert str(tmp_path / "MNIST" / "raw") in exc.value.message and exc.value.hint


def test_a_gzipped_mnist_file_is_read(tmp_path):
    root = mnist(tmp_path, train_images=gzip.compress(idx("image", 48)))
    d = load_data("MNIST", root=root)
    want = torch.frombuffer(bytearray(idx("image", 48)), dtype=torch.uint8, offset=16)
    assert torch.equal(d.train["image"].flatten(), want.float() / 255)  # ToTensor: /255
    assert d.info.sizes == {"train": 48, "test": 16}


def test_the_cli_reports_a_wrong_magic_number_as_one_clean_e414(tmp_path, monkeypatch, capsys):
    mnist(tmp_path / "data", **DAMAGED_MNIST["wrong_magic"][0])
    path = spec(tmp_path, 'MNIST(root="data")')
    code, err = cli(["run", path, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and err.startswith(f"{path}:7:10: error[E414]: ")
    assert "train-images-idx3-ubyte: this is not an MNIST image file" in err.splitlines()[0]
    assert "= hint: delete" in err


@pytest.mark.skipif(not (DATA / "MNIST" / "raw" / RAW[0]).is_file(), reason=f"no MNIST in {DATA}")
def test_real_mnist_is_read_as_torchvision_reads_it():
    import torchvision

    d = load_data("MNIST", root=DATA)
    for train, split in ((True, d.train), (False, d.test)):
        ref = torchvision.datasets.MNIST(str(DATA), train=train, download=False)
        assert torch.equal(split["image"][:, 0], ref.data.float() / 255)  # ToTensor's values
        assert torch.equal(split["label"], ref.targets)


# ---- row 3: device indices (E411) ------------------------------------------------------------
BAD_DEVICES = ["cuda:99999999999999999999", "cuda:-1", "cuda:abc", "cpu:5", "cuda:128",
               "cuda: 1", "mps:3"]


@pytest.mark.parametrize("device", BAD_DEVICES)
def test_a_device_index_torch_cannot_take_is_e411_for_run_and_eval(device, tmp_path, monkeypatch,
                                                                   capsys):
    path = spec(tmp_path, "synthetic(shape=2, num_classes=3, n=32, n_test=8)", classes=3,
                shape="[2]")
    for args in (["run", path, "--device", device, "--out", tmp_path / "runs"],
                 ["eval", path, "--device", device, "-w", tmp_path / "nothing.pt"]):
        code, err = cli(args, monkeypatch, capsys, tmp_path)
        assert code == 1 and err.startswith("--device:1:8: error[E411]: "), err
        assert "device index" in err and "= hint: " in err
    with pytest.raises(DeviceError):  # what compiled scripts call
        resolve_device(device)


def test_a_device_index_in_the_spec_is_e411_at_check(tmp_path, monkeypatch, capsys):
    path = spec(tmp_path, "synthetic(shape=2, num_classes=3)", classes=3, shape="[2]")
    path.write_text(path.read_text().replace('"cpu"', '"cuda:99999999999999999999"'))
    code, err = cli(["check", path], monkeypatch, capsys, tmp_path)
    assert code == 1 and 'm.net:11:12: error[E411]: device index out of range' in err, err


# ---- row 4: memory (W311, E413) ----------------------------------------------------------------
HUGE = """\
model Huge {
  input x: [400000]
  x -> Linear(400000) -> Linear(400000) -> y
  output y
}
"""
CHAIN = """\
model Chain {{
  input x: [4]
  x -> Linear({n}) -> Linear({n}) -> Linear(1) -> y
  output y
}}
train Chain {{
  data = synthetic(shape=4, target_shape=1, n=4, n_test=0)
  loss = MSELoss
  batch_size = 2
  epochs = 1
  device = "cpu"
}}
"""


def test_check_and_summary_warn_when_the_parameters_exceed_the_machine(tmp_path, monkeypatch,
                                                                      capsys):
    (tmp_path / "huge.net").write_text(HUGE)  # 1.2 TiB of float32 parameters
    code, err = cli(["check", "huge.net"], monkeypatch, capsys, tmp_path)
    assert code == 0 and err.startswith("huge.net:1:1: warning[W311]: Huge holds "
                                        "320,000,800,000 parameters, 1,280,003,200,000 bytes"), err
    code, err = cli(["summary", "huge.net"], monkeypatch, capsys, tmp_path)
    assert code == 0 and "warning[W311]" in err


def _limited(code: str, limit_gib: float, cwd: Path) -> subprocess.CompletedProcess:
    """Python `code` under an address-space limit (RLIMIT_AS), in a fresh interpreter."""
    pre = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({int(limit_gib * 2**30)}, "
           "resource.RLIM_INFINITY))\n")
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_under_an_address_space_limit_check_warns_and_run_refuses(tmp_path):
    (tmp_path / "chain.net").write_text(CHAIN.format(n=22000))  # 484M parameters: 1.8 GiB
    r = _limited("""
        import sys
        from netdsl.cli import main
        try:
            main(["check", "chain.net"])
        finally:
            assert "torch" not in sys.modules
        """, 1.0, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning[W311]: Chain holds 484,154,001 parameters" in r.stderr, r.stderr
    assert "the address-space limit of 1.0 GiB (ulimit -v) leaves" in r.stderr
    r = _limited("""
        from netdsl.cli import main
        main(["run", "chain.net", "--out", "runs"])
        """, 8.0, tmp_path)
    assert r.returncode == 1, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("chain.net:1:1: error[E413]: not enough memory to train Chain: it "
                            "needs about 7,74"), r.stderr
    assert "of Adam state" in first and "address-space limit of 8.0 GiB" in first
    assert "= hint: " in r.stderr and not (tmp_path / "runs").exists()


def test_a_failed_allocation_is_e413_not_an_internal_error(tmp_path):
    """When the estimate is wrong (here: switched off), torch's own failure is still E413."""
    (tmp_path / "chain.net").write_text(CHAIN.format(n=40000))  # 6.0 GiB of weights
    r = _limited("""
        from netdsl.cli import main
        from netdsl.runtime import runner
        runner.check_memory = lambda *a: None
        main(["run", "chain.net", "--out", "runs"])
        """, 6.0, tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error[E413]: not enough memory: ran out while training Chain ("), \
        r.stderr
    assert "E900" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", sorted(OPTIMIZERS.members))
def test_the_optimizer_state_the_estimate_counts_is_torchs(name):
    cls = OPTIMIZERS.members[name]
    for kwargs in ({}, {"momentum": 0.9}, {"amsgrad": True}, {"centered": True}):
        if any(k not in cls.model_fields for k in kwargs):
            continue
        decl = cls(**kwargs)
        p = torch.nn.Parameter(torch.randn(7, 3))
        opt = getattr(torch.optim, name)([p], **decl.kwargs())
        p.grad = torch.ones_like(p)
        opt.step()
        held = sum(v.numel() for v in opt.state[p].values()
                   if isinstance(v, torch.Tensor) and v.numel() > 1)
        assert held == decl.state_copies() * p.numel(), (name, kwargs)


def test_the_training_estimate_adds_weights_gradients_state_and_activations():
    s = netdsl.loads(CHAIN.format(n=100).replace("batch_size = 2", "batch_size = 8"))
    est = training_estimate(s.graph(), s.plan())
    params = (4 * 100 + 100) + (100 * 100 + 100) + (100 + 1)
    assert est.weights == est.gradients == 4 * params and est.optimizer == 2 * 4 * params
    assert est.activations == 8 * 4 * (4 + 100 + 100 + 1)  # every value, a batch of 8


# ---- row 5: a corpus of damaged datasets, none of which is an internal error ------------------
def _corpus(tmp: Path) -> list[tuple[str, str, str]]:
    """(name, data setting, input shape) for every damaged dataset, written under `tmp`."""
    out = []
    for name, (files, _) in DAMAGED_MNIST.items():
        mnist(tmp / f"mnist_{name}", **files)
        out.append((f"mnist_{name}", f'MNIST(root="{tmp / f"mnist_{name}"}")', "[1, 28, 28]"))
    labels = [i % 10 for i in range(48)]
    for bad in (10, 200, 255):
        ys = labels[:-1] + [bad]
        mnist(tmp / f"mnist_label_{bad}", train_labels=idx("label", 48, ys))
        out.append((f"mnist_label_{bad}", f'MNIST(root="{tmp / f"mnist_label_{bad}"}")',
                    "[1, 28, 28]"))
    (tmp / "mnist_missing").mkdir()
    out.append(("mnist_missing", f'MNIST(root="{tmp / "mnist_missing"}")', "[1, 28, 28]"))
    mnist(tmp / "mnist_gz", train_images=gzip.compress(idx("image", 48)))
    out.append(("mnist_gz", f'MNIST(root="{tmp / "mnist_gz"}")', "[1, 28, 28]"))
    good = "f0,f1,label\n0.1,0.2,1\n0.3,0.4,0\n0.5,0.6,2\n"
    csvs = {
        "empty": b"", "header_only": b"f0,f1,label\n", "binary": bytes(range(256)) * 8,
        "nul_bytes": b"f0,f1,label\n0.1,\x00,1\n", "latin1": "f0,f1,label\n0.1,0.2,\xe9\n".encode(
            "latin-1"),
        "ragged": b"f0,f1,label\n0.1,0.2\n0.3,0.4,1,9\n", "non_numeric": b"f0,f1,label\nx,y,1\n",
        "no_label_column": b"a,b,c\n1,2,3\n", "label_200": (good + "0.7,0.8,200\n").encode(),
        "label_negative": (good + "0.7,0.8,-3\n").encode(), "label_float": (good + "1,1,0.5\n").encode(),
        "label_huge": (good + "1,1,1e30\n").encode(), "label_inf": (good + "1,1,inf\n").encode(),
        "label_nan": (good + "1,1,nan\n").encode(), "gzip": gzip.compress(good.encode()),
        "quote": b'f0,f1,label\n"0.1,0.2,1\n', "bom": b"\xef\xbb\xbf" + good.encode(),
        "semicolons": good.replace(",", ";").encode(), "huge_field": b"f0,f1,label\n" + b"1" * 200000
        + b",1,1\n", "string_labels_many": (good + "".join(f"1,1,c{i}\n" for i in range(12))).encode(),
    }
    for name, blob in csvs.items():
        (tmp / f"{name}.csv").write_bytes(blob)
        out.append((f"csv_{name}", f'CSV(path="{tmp / f"{name}.csv"}", targets="label")', "[2]"))
    out.append(("csv_missing", f'CSV(path="{tmp / "nope.csv"}", targets="label")', "[2]"))
    out.append(("csv_directory", f'CSV(path="{tmp}", targets="label")', "[2]"))
    from PIL import Image

    def folder(name: str, build) -> None:
        root = tmp / f"images_{name}"
        root.mkdir()
        build(root)
        out.append((f"images_{name}", f'ImageFolder(path="{root}", convert="L")', "[1, 28, 28]"))

    def png(path: Path, size=(28, 28)) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", size, 7).save(path)

    folder("empty", lambda r: None)
    folder("no_images", lambda r: ((r / "a").mkdir(), (r / "a" / "x.txt").write_text("hi")))
    folder("truncated_png", lambda r: (png(r / "a" / "0.png"), png(r / "b" / "1.png"),
                                       (r / "b" / "2.png").write_bytes(
                                           (r / "a" / "0.png").read_bytes()[:40])))
    folder("garbage_jpg", lambda r: (png(r / "a" / "0.png"), png(r / "b" / "0.png"),
                                     (r / "b" / "1.jpg").write_bytes(b"\xff\xd8\xff" + bytes(50))))
    folder("zero_bytes", lambda r: (png(r / "a" / "0.png"), png(r / "b" / "0.png"),
                                    (r / "b" / "1.png").write_bytes(b"")))
    folder("mixed_sizes", lambda r: (png(r / "a" / "0.png"), png(r / "b" / "1.png", (30, 20))))
    folder("wrong_size", lambda r: (png(r / "a" / "0.png", (14, 14)), png(r / "b" / "1.png",
                                                                          (14, 14))))
    folder("twelve_classes", lambda r: image_folder(r, 12, 1))
    folder("one_class", lambda r: png(r / "a" / "0.png"))
    folder("train_test_mismatch", lambda r: (png(r / "train" / "a" / "0.png"),
                                             png(r / "train" / "b" / "0.png"),
                                             png(r / "test" / "c" / "0.png")))
    for name, y in (("float", "[0.5, 1, 2]"), ("negative", "[0, -1, 2]"), ("big", "[0, 1, 99]"),
                    ("ragged", "[[0], 1, 2]")):
        out.append((f"tensors_{name}", f"tensors(X=[[0, 1], [1, 0], [1, 1]], y={y})", "[2]"))
    return out


def test_no_damaged_dataset_is_an_internal_error(tmp_path, monkeypatch, capsys):
    corpus = _corpus(tmp_path / "corpus")
    codes = {}
    for name, data, shape in corpus:
        path = spec(tmp_path, data, shape=shape, name=f"{name}.net")
        code, err = cli(["run", path, "--out", tmp_path / "runs", "--json"], monkeypatch, capsys,
                        tmp_path)
        clean(code, err)
        codes[name] = next((c for c in ("E406", "E407", "E412", "E414", "E403", "E401")
                            if f"[{c}]" in err), "ok" if code == 0 else err)
        if code == 1:  # one diagnostic, its header on the first line
            assert err.count("error[") == 1 and "error[E" in err.splitlines()[0], (name, err)
    assert len(corpus) >= 50
    (tmp_path / "codes.json").write_text(json.dumps(codes, indent=1))
    assert all(codes[f"mnist_{n}"] == "E414" for n in DAMAGED_MNIST), codes
    assert {codes[n] for n in ("mnist_label_10", "mnist_label_200", "mnist_label_255",
                               "csv_label_200", "csv_label_negative", "csv_label_huge",
                               "images_twelve_classes", "tensors_negative", "tensors_big")} == \
        {"E412"}, codes
    assert codes["csv_binary"] == codes["csv_latin1"] == codes["images_truncated_png"] == "E414"
    assert codes["mnist_gz"] == "ok" and codes["csv_bom"] == "ok", codes
