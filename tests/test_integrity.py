"""Integrity (issue 18): nothing silently wrong.

Damaged weights and checkpoints are E409 when read (the zip CRCs torch.load does not check),
naming the file and the damaged entry; a file plain torch.save wrote still loads.
Checkpoints carry hashes of the network and the plan: resuming under another one is E409
(or, asked for, a note), and a resumed run never overwrites the run folder's spec.net and
plan.json. CSV data errors are located (file, line, column) before training: a column named
twice, an empty label, NaN or infinite cells.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from netdsl.cli import main
from netdsl.runtime import loop

NET = """\
model Net {
  input x: [8]
  x -> Linear(32) -> ReLU -> Linear(3) -> logits
  output logits
}
train Net {
  data = synthetic(shape=8, num_classes=3, n=256, n_test=64, val=32)
  batch_size = 32
  epochs = 2
  optimizer = Adam(lr=0.01)
  checkpoint = Checkpoint(keep="best", monitor="val.accuracy")
  seed = 5
}
"""


def cli(args, monkeypatch, capsys, cwd: Path) -> tuple[int, str, str]:
    """`netdsl ARGS` in this process: (exit status, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run: (spec file, run folder) with weights.pt and checkpoints/last.pt, best.pt."""
    import netdsl
    from netdsl.runtime import runner

    where = tmp_path_factory.mktemp("trained")
    spec = where / "net.net"
    spec.write_text(NET, encoding="utf-8")
    r = runner.run(netdsl.load(spec), out=where / "runs", progress=False)
    return spec, Path(r["run_dir"])


def entries(path: Path) -> dict[str, tuple[int, int, str | None]]:
    """Entry name (without the archive's folder) -> (offset of its data, size, the tensor it
    holds). torch.save numbers storages in the order it first meets them, so the n-th
    distinct storage met walking the loaded object is `data/n`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = torch.load(path, weights_only=True)
    names: dict[int, str] = {}

    def walk(o, trail):
        if isinstance(o, torch.Tensor):
            names.setdefault(o.untyped_storage().data_ptr(), ".".join(trail))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, [*trail, str(k)])
        elif isinstance(o, list | tuple):
            for i, v in enumerate(o):
                walk(v, trail if isinstance(o, tuple) else [*trail, str(i)])

    walk(obj, [])
    order = list(names.values())
    blob = path.read_bytes()
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            n, m = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + n + m
            name = info.filename.split("/", 1)[1]
            key = int(name[5:]) if name.startswith("data/") else None
            out[name] = (start, info.file_size, None if key is None else order[key])
    return out


def flip(path: Path, at: int, count: int = 64) -> None:
    blob = bytearray(path.read_bytes())
    for i in range(at, min(at + count, len(blob))):
        blob[i] ^= 0xA5
    path.write_bytes(bytes(blob))


def damage(path: Path, where: str) -> str:
    """Flip 64 bytes of `path` at `where`; the entry named in the message expected."""
    table = entries(path)
    if where == "data.pkl":
        start, size, _ = table["data.pkl"]
        flip(path, start + size // 2, min(64, size // 2))
        return "data.pkl"
    if where == "directory":  # the CRC-32 in the central directory's record of a tensor
        name = max((k for k in table if k.startswith("data/")), key=lambda k: table[k][1])
        blob = path.read_bytes()
        with zipfile.ZipFile(path) as z:
            at = z.start_dir
        while not blob[at + 46:].split(b"/", 1)[1].startswith(name.encode() + b"PK"):
            n, m, k = struct.unpack("<HHH", blob[at + 28:at + 34])
            at += 46 + n + m + k
        flip(path, at + 16, 4)
        return name
    # inside tensor data: the largest tensor whose name has `where` in it
    name = max((k for k, v in table.items() if k.startswith("data/") and v[2] and where in v[2]),
               key=lambda k: table[k][1])
    start, size, _ = table[name]
    flip(path, start + size // 3, min(64, size // 3))
    return name


def refused(code: int, err: str, file: Path, entry: str) -> str:
    assert code == 1, err
    assert "Traceback" not in err and "E900" not in err, err
    first = err.splitlines()[0]
    assert first.startswith("error[E409]: ") and str(file) in first, err
    assert f"is damaged: its entry {entry}" in first, err
    assert err.count("error[") == 1 and "= hint" not in err, err  # one line, one error
    return first


# ---- damaged weights and checkpoints are E409 ------------------------------------------------
@pytest.mark.parametrize("where", ["weight", "data.pkl", "directory"])
def test_a_damaged_weights_file_is_e409_for_eval(where, trained, tmp_path, monkeypatch, capsys):
    spec, folder = trained
    weights = tmp_path / "weights.pt"
    shutil.copyfile(folder / "weights.pt", weights)
    entry = damage(weights, where)
    code, out, err = cli(["eval", spec, "--weights", weights], monkeypatch, capsys, tmp_path)
    first = refused(code, err, weights, entry)
    assert "accuracy" not in out  # no score of damaged weights
    if where == "weight":
        assert "(tensor fc1.weight)" in first and "does not match its CRC-32" in first
        assert "train again" in first  # what to do


@pytest.mark.parametrize("where", ["optimizer.state", "model.", "data.pkl", "directory"])
def test_a_damaged_last_checkpoint_is_e409_for_resume_and_eval(where, trained, tmp_path,
                                                               monkeypatch, capsys):
    spec, folder = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    last = copy / "checkpoints" / "last.pt"
    entry = damage(last, where)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    code, _, err = cli(["run", spec, "--resume", copy, "--epochs", "3"], monkeypatch, capsys,
                         tmp_path)
    first = refused(code, err, last, entry)
    if where not in ("data.pkl", "directory"):  # e.g. (tensor optimizer.state.0.exp_avg)
        assert f"(tensor {entries(folder / 'checkpoints' / 'last.pt')[entry][2]})" in first
    assert "start it again without --resume" in first
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before  # untouched
    code, _, err = cli(["eval", spec, "--weights", last], monkeypatch, capsys, tmp_path)
    refused(code, err, last, entry)


def test_a_damaged_best_checkpoint_is_e409_for_eval(trained, tmp_path, monkeypatch, capsys):
    spec, folder = trained
    best = tmp_path / "best.pt"
    shutil.copyfile(folder / "checkpoints" / "best.pt", best)
    entry = damage(best, "model.fc2")
    code, _, err = cli(["eval", spec, "--weights", best], monkeypatch, capsys, tmp_path)
    refused(code, err, best, entry)


def test_intact_files_and_files_of_plain_torch_save_still_load(trained, tmp_path, monkeypatch,
                                                               capsys):
    spec, folder = trained
    code, out, err = cli(["eval", spec, "--weights", folder / "weights.pt"], monkeypatch, capsys,
                         tmp_path)
    assert code == 0 and "test.accuracy" in out, err
    state = torch.load(folder / "weights.pt", weights_only=True)
    legacy = {"_use_new_zipfile_serialization": False}
    for name, kwargs in (("plain.pt", {}), ("legacy.pt", legacy)):
        torch.save(state, tmp_path / name, **kwargs)  # no netdsl in the writing
        code, out2, err = cli(["eval", spec, "--weights", tmp_path / name], monkeypatch, capsys,
                              tmp_path)
        assert code == 0 and out2 == out, err
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    code, out, err = cli(["run", spec, "--resume", copy, "--epochs", "3"], monkeypatch, capsys,
                         tmp_path)
    assert code == 0 and "epoch 3/3" in out, err


def test_no_damaged_byte_reads_back_as_other_tensors(trained, tmp_path):
    """Each byte of a real last.pt, flipped alone: the file is refused as damaged, or torch
    cannot read it (E409 too), or it reads back exactly (bytes torch ignores, such as the
    padding before aligned data). Never different tensors."""
    _, folder = trained
    blob = (folder / "checkpoints" / "last.pt").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = torch.load(io.BytesIO(blob), weights_only=True)
    bad = tmp_path / "bad.pt"
    seen = {"damaged": 0, "unreadable": 0, "same": 0}
    for at in range(0, len(blob), max(1, len(blob) // 700)):
        flipped = bytearray(blob)
        flipped[at] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            loop.verify_archive(bad)
        except loop.DamagedArchive as exc:
            assert str(bad) in str(exc) and "is damaged" in str(exc)
            seen["damaged"] += 1
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = torch.load(io.BytesIO(bytes(flipped)), weights_only=True)
        except Exception:  # noqa: BLE001 -- E409 "cannot read" in netdsl
            seen["unreadable"] += 1
            continue
        assert _same(got, want), f"byte {at} changed what the file holds, unnoticed"
        seen["same"] += 1
    assert seen["damaged"] > 2 * (seen["same"] + seen["unreadable"]), seen


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape \
            and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_the_compiled_script_refuses_a_damaged_checkpoint(trained, tmp_path):
    """A compiled script's --resume checks every entry's CRC-32 of its own checkpoint (which
    torch.load does not) before it reads it."""
    from netdsl.targets.compile import compile_spec

    spec, _ = trained
    script = tmp_path / "train_net.py"
    script.write_text(compile_spec(spec), encoding="utf-8")
    first = subprocess.run([sys.executable, str(script), "--epochs", "1", "--out",
                            str(tmp_path / "first")], capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "last.pt"
    shutil.copyfile(tmp_path / "first" / "checkpoints" / "last.pt", last)
    damage(last, "optimizer.state")
    p = subprocess.run([sys.executable, str(script), "--epochs", "3", "--out", str(tmp_path / "o"),
                        "--resume", str(last)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode != 0 and not (tmp_path / "o" / "weights.pt").exists()
    lines = p.stderr.strip().splitlines()  # one line, no traceback
    assert len(lines) == 1 and lines[0].startswith(f"error: {last} is damaged: its entry "), p.stderr


def test_a_damaged_best_checkpoint_read_on_resume_is_e409(tmp_path, monkeypatch, capsys):
    """With early_stopping's restore_best, resuming reads best.pt as well."""
    spec = tmp_path / "net.net"
    spec.write_text(NET.replace("  seed = 5", "  early_stopping = EarlyStopping(monitor="
                                "\"val.accuracy\", patience=5, restore_best=true)\n  seed = 5"))
    code, _, err = cli(["run", spec, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 0, err
    folder = next((tmp_path / "runs").iterdir())
    best = folder / "checkpoints" / "best.pt"
    entry = damage(best, "model.")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    code, _, err = cli(["run", spec, "--resume", folder, "--epochs", "3"], monkeypatch, capsys,
                         tmp_path)
    first = refused(code, err, best, entry)
    assert "cannot restore its best epoch" in first
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


# ---- checkpoints carry hashes of the network and the plan -------------------------------------
def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()
            and p.name not in ("metrics.jsonl", "result.json", "curves.png", "weights.pt")}


@pytest.mark.parametrize("change,words", [
    (("ReLU", "Tanh"), ("the network changed since {ck} was written (relu1 = ReLU() of fc1 then, "
                        "tanh1 = Tanh() of fc1 now, and 1 more difference): resume with the spec "
                        "that trained it ({folder}/spec.net), or start a new run without --resume")),
    (("-> ReLU", "-> ReLU(inplace=true)"), ("(relu1 = ReLU() of fc1 then, relu1 = "
                                            "ReLU(inplace=true) of fc1 now)")),
    (("lr=0.01", "lr=0.02"), ("the training plan changed since {ck} was written "
                              "(optimizer.kwargs.lr: 0.01 then, 0.02 now): resume with the plan "
                              "that trained it ({folder}/plan.json; only epochs, device and the "
                              "data's root may change), or start a new run without --resume")),
    (("batch_size = 32", "batch_size = 16"), "(batch_size: 32 then, 16 now; also eval_batch_size)"),
], ids=["relu-tanh", "argument", "lr", "batch_size"])
def test_resuming_under_another_network_or_plan_is_e409(change, words, trained, tmp_path,
                                                        monkeypatch, capsys):
    """Shapes kept (the weights fit): still refused, in one line that says what changed and
    what to do; nothing in the run folder is written."""
    _, folder = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    other = tmp_path / "other.net"
    assert change[0] in NET
    other.write_text(NET.replace(change[0], change[1]), encoding="utf-8")
    before = _folder_files(copy)
    code, _, err = cli(["run", other, "--resume", copy, "--epochs", "3"], monkeypatch, capsys,
                       tmp_path)
    assert code == 1 and err.count("error[") == 1 and "Traceback" not in err, err
    first = err.splitlines()[0]
    ck = copy / "checkpoints" / "last.pt"
    assert first.startswith("error[E409]: ") and words.format(ck=ck, folder=copy) in first, first
    assert first.endswith("; --allow-changes continues with the change"), first
    assert _folder_files(copy) == before
    # the flag the message names: the change goes on, recorded, and the first spec is kept
    code, _, err = cli(["run", other, "--resume", copy, "--epochs", "3", "--allow-changes"],
                       monkeypatch, capsys, tmp_path)
    assert code == 0, err
    assert (copy / "spec.net").read_text(encoding="utf-8") == NET


def test_checkpoints_carry_the_hashes(trained):
    import netdsl
    from netdsl.runtime import runner

    spec, folder = trained
    s = netdsl.load(spec)
    state = loop.load_checkpoint(str(folder / "checkpoints" / "last.pt"))
    assert state["network"] == runner.network_record(s.graph())
    assert state["plan_hash"] == loop.plan_hash(s.plan().settings())
    assert len(state["network"]["hash"]) == len(state["plan_hash"]) == 64
    # the same in another process (nothing in it depends on ids or hash seeds)
    code = ("import sys, netdsl; from netdsl.runtime import runner, loop; s = netdsl.load(sys.argv[1]); "
            "print(runner.network_record(s.graph())['hash'], loop.plan_hash(s.plan().settings()))")
    p = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True,
                       check=True, env={**__import__("os").environ, "PYTHONHASHSEED": "123"})
    assert p.stdout.split() == [state["network"]["hash"], state["plan_hash"]]
    # what a resume may change leaves the plan's hash alone
    moved = s.plan(epochs=9, device="cpu").settings()
    moved["data"]["root"] = "elsewhere"
    assert loop.plan_hash(moved) == state["plan_hash"]
    assert loop.plan_hash(s.plan(seed=6).settings()) != state["plan_hash"]


def test_allowed_changes_are_a_note_and_the_folder_keeps_its_first_spec(trained, tmp_path):
    import netdsl

    spec, folder = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    first = {n: (copy / n).read_bytes() for n in ("spec.net", "plan.json")}
    other = tmp_path / "tanh.net"
    other.write_text(NET.replace("ReLU", "Tanh"), encoding="utf-8")
    with pytest.raises(netdsl.NetdslError) as exc:  # the Python API names its own way out
        netdsl.fit(other, resume=copy, epochs=3, progress=False)
    assert "allow_changes=True continues with the change" in str(exc.value)
    r = netdsl.fit(other, resume=copy, epochs=3, progress=False, allow_changes=True)
    assert r["epochs"] == 3 and r["run_dir"] == str(copy)
    assert any("the network differs from the checkpoint's (relu1 = ReLU() of fc1 then, "
               "tanh1 = Tanh() of fc1 now" in n for n in r["notes"]), r["notes"]
    assert {n: (copy / n).read_bytes() for n in first} == first  # never overwritten
    assert (copy / "spec.resumed-1.net").read_text() == other.read_text()
    plan = json.loads((copy / "plan.resumed-1.json").read_text())
    assert plan["settings"]["epochs"] == 3
    assert any("the network differs" in n for n in plan["notes"])  # the note is recorded
    assert r["files"]["spec"] == str(copy / "spec.resumed-1.net")
    # the checkpoint now records the new network: resuming with it needs no permission, and
    # an unchanged resume writes no more copies
    r = netdsl.fit(other, resume=copy, epochs=3, progress=False)
    assert r["epochs"] == 3 and not (copy / "spec.resumed-2.net").exists()
    assert r["files"]["plan"] == str(copy / "plan.resumed-1.json")
    # the first spec is the latest no more
    with pytest.raises(netdsl.NetdslError) as exc:
        netdsl.fit(spec, resume=copy, epochs=4, progress=False)
    assert f"resume with the spec that trained it ({copy}/spec.resumed-1.net)" in str(exc.value)


def test_a_resume_that_changes_only_epochs_keeps_the_first_files(trained, tmp_path):
    import netdsl

    spec, folder = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    first = {n: (copy / n).read_bytes() for n in ("spec.net", "plan.json")}
    r = netdsl.fit(spec, resume=copy, epochs=2, progress=False)  # nothing changed
    assert sorted(p.name for p in copy.glob("*.resumed-*")) == []
    assert r["files"]["spec"] == str(copy / "spec.net")
    r = netdsl.fit(spec, resume=copy, epochs=3, progress=False)
    assert r["epochs"] == 3
    assert {n: (copy / n).read_bytes() for n in first} == first
    assert sorted(p.name for p in copy.glob("*.resumed-*")) == ["plan.resumed-1.json",
                                                                 "spec.resumed-1.net"]
    assert json.loads((copy / "plan.resumed-1.json").read_text())["settings"]["epochs"] == 3


def test_a_checkpoint_without_hashes_still_resumes_with_a_note(trained, tmp_path):
    import netdsl

    spec, folder = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    last = copy / "checkpoints" / "last.pt"
    state = loop.load_checkpoint(str(last))
    del state["network"], state["plan_hash"]  # as netdsl wrote them before
    loop.save_checkpoint(str(last), state)
    r = netdsl.fit(spec, resume=copy, epochs=3, progress=False)
    assert r["epochs"] == 3
    assert any("records no hash of its network" in n for n in r["notes"]), r["notes"]


# ---- CSV data errors are located ------------------------------------------------------------
CSV_NET = """\
model M {{
  input x: [2]
  x -> Linear(8) -> ReLU -> Linear(3) -> logits
  output logits
}}
train M {{
  data = CSV(path="{path}", targets="{target}")
  loss = {loss}
  batch_size = 4
  epochs = 1
  device = "cpu"
}}
"""

GOOD = ["0.1,0.2,1", "0.3,0.4,0", "0.5,0.6,2", "0.7,0.8,1"]


@pytest.mark.parametrize("header,rows,where,words", [
    ("a,a,label", GOOD, 1, "column 'a' appears twice in the header (columns 1 and 2)"),
    ("a,b,label", GOOD[:2] + ["0.5,0.6,"] + GOOD[3:], 4, "the target in column 'label' is empty"),
    ("a,b,label", GOOD[:2] + ["0.5,0.6, "] + GOOD[3:], 4, "the target in column 'label' is empty"),
    ("a,b,label", GOOD[:3] + ["nan,0.8,1"], 5, "column 'a' holds nan, not a finite number"),
    ("a,b,label", GOOD[:1] + ["0.3,-inf,0"] + GOOD[2:], 3,
     "column 'b' holds -inf, not a finite number"),
    ("a,b,label", GOOD[:1] + ["0.3,1e999,0"] + GOOD[2:], 3,
     "column 'b' holds 1e999, not a finite number"),
    ("a,b,label", GOOD[:1] + ["0.3,0.4,NaN"] + GOOD[2:], 3,
     "column 'label' holds NaN, not a finite number"),
    ("a,b,label", GOOD[:1] + ["0.3,,0"] + GOOD[2:], 3, "column 'b' is empty"),
], ids=["duplicate", "empty-label", "blank-label", "nan", "-inf", "overflow", "nan-label",
        "empty-feature"])
def test_csv_cells_and_headers_are_located_data_errors(header, rows, where, words, tmp_path,
                                                       monkeypatch, capsys):
    data = tmp_path / "t.csv"
    data.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    spec = tmp_path / "m.net"
    spec.write_text(CSV_NET.format(path=data, target="label",
                                   loss="CrossEntropyLoss(logits, label)"), encoding="utf-8")
    code, out, err = cli(["run", spec, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and err.count("error[") == 1 and "Traceback" not in err, err
    first = err.splitlines()[0]
    assert "error[E406]: " in first and f"{data}:{where}: {words}" in first, err
    assert "= hint: " in err and "diverged" not in err + out
    assert not (tmp_path / "runs").exists()  # refused when loading, before any run folder


def test_csv_errors_name_the_line_of_the_file(tmp_path):
    """Blank lines and a quoted cell over two lines count: the line is the file's."""
    from netdsl.runtime.data import DataError, load_data

    data = tmp_path / "t.csv"
    data.write_text('a,b,label\n0.1,0.2,"x\ny"\n\n0.3,0.4,z\n0.5,inf,z\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_data("CSV", path=str(data), targets="label")
    assert exc.value.message == f"{data}:6: column 'b' holds inf, not a finite number"
    assert exc.value.code == "E406"


def test_a_regression_target_that_is_inf_is_located(tmp_path, monkeypatch, capsys):
    data = tmp_path / "r.csv"
    data.write_text("a,b,y\n0.1,0.2,0.5\n0.3,0.4,inf\n0.5,0.6,1.5\n", encoding="utf-8")
    spec = tmp_path / "m.net"
    spec.write_text(CSV_NET.format(path=data, target="y", loss="MSELoss(logits, target)")
                    .replace("Linear(3)", "Linear(1)"), encoding="utf-8")
    code, _, err = cli(["run", spec, "--out", tmp_path / "runs"], monkeypatch, capsys, tmp_path)
    assert code == 1 and f"error[E406]: {data}:3: column 'y' holds inf" in err, err
    assert "E408" not in err and "diverged" not in err


def test_the_compiled_script_gives_the_csv_error_too(tmp_path):
    from netdsl.targets.compile import compile_spec

    data = tmp_path / "t.csv"
    data.write_text("a,a,label\n" + "\n".join(GOOD) + "\n", encoding="utf-8")
    spec = tmp_path / "m.net"
    spec.write_text(CSV_NET.format(path=data, target="label",
                                   loss="CrossEntropyLoss(logits, label)"), encoding="utf-8")
    script = tmp_path / "m.py"
    script.write_text(compile_spec(spec), encoding="utf-8")
    p = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"error: {data}:1: column 'a' appears twice in the header")
