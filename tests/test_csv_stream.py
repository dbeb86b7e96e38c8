"""Streamed CSV files: one checking pass keeps only where each row starts (and what the labels
are), then rows are read one at a time through torch's DataLoader. Every field, class name and
shape is the in-memory path's, a run's history is identical, the choice is automatic from the
file's size, and a bad row or label anywhere in the file is found before anything trains."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.runtime import runner
from netdsl.runtime.data import DataError, LabelError, Lazy, load_data

ROWS = 300


def table(path, n=ROWS, seed=0, extra=""):
    """Columns a, b, c (inputs), price (a value) and kind (a class name), n rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    kind = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    names = ["ant", "bee", "cat"]
    lines = ["a,b,c,price,kind"]
    for i in range(n):
        a, b, c = (f"{v:.4f}" for v in x[i].tolist())
        lines.append(f"{a},{b},{c},{2 * x[i, 0] - x[i, 2]:.4f},{names[kind[i]]}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def every_sample(data, split):
    loader = data.loader(split, 64, shuffle=False)
    batches = list(loader.batches(0))
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


USES = {"table": {"kind": "input"}, "kind": {"kind": "class"}, "price": {"kind": "values"}}


@pytest.mark.parametrize("workers", [0, 1])
def test_a_streamed_file_gives_the_in_memory_fields(tmp_path, workers):
    train, test = table(tmp_path / "t.csv"), table(tmp_path / "test.csv", 80, seed=1)
    kw = dict(path=str(train), test_path=str(test), table=["a", "b", "c"], price="price",
              kind="kind", fields=USES, val=0.2, seed=3)
    memory = load_data("CSV", stream=False, **kw)
    streamed = load_data("CSV", stream=True, workers=workers, **kw)
    assert isinstance(streamed.train["table"], Lazy) and streamed.info.streamed
    assert streamed.info.fields == memory.info.fields  # shapes, dtypes, classes, counts
    assert memory.info.fields["kind"].classes == ["ant", "bee", "cat"]
    for split in ("train", "val", "test"):
        got, want = every_sample(streamed, split), every_sample(memory, split)
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), (split, k)


def test_features_and_targets_infer_the_task_alike(tmp_path):
    whole = tmp_path / "whole.csv"
    whole.write_text("x,y,label\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(40)))
    real = tmp_path / "real.csv"
    real.write_text("x,y,label\n" + "".join(f"{i},{i % 7},{i / 3:.3f}\n" for i in range(40)))
    for path, kind in ((whole, "class"), (real, "values")):
        for stream in (False, True):
            d = load_data("CSV", path=str(path), targets="label", stream=stream, workers=0)
            assert d.info.fields["target"].kind == kind, (path.name, stream)
        m, s = (load_data("CSV", path=str(path), targets="label", stream=b, workers=0)
                for b in (False, True))
        assert torch.equal(every_sample(m, "train")["target"], every_sample(s, "train")["target"])


def test_quoted_cells_across_lines_a_bom_and_semicolons_read_alike(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_bytes(b"\xef\xbb\xbfnote;x;label\r\n"
                     b'"one\nline two";1.5;a\r\n\r\n"say ""hi""";2.5;b\r\n"";3.5;a\r\n')
    kw = dict(path=str(path), x="x", label="label", delimiter=";",
              fields={"x": {"kind": "input"}, "label": {"kind": "class"}})
    m = every_sample(load_data("CSV", stream=False, **kw), "train")
    s = every_sample(load_data("CSV", stream=True, workers=0, **kw), "train")
    assert torch.equal(m["x"], s["x"]) and m["label"].tolist() == s["label"].tolist() == [0, 1, 0]


SPEC = """\
model Reg {{
  input table: [3]
  table -> Linear(16) -> ReLU -> Dropout(0.1) -> Linear(1) -> value
  table -> Linear(8) -> ReLU -> Linear(3) -> scores
  output value
  output scores
}}
train Reg {{
  data = CSV(path="{path}", table=["a", "b", "c"], price="price", kind="kind", val=0.2,
             transform=[Normalize(0.0, 1.5)], {extra})
  loss = MSELoss(value, price) + CrossEntropyLoss(scores, kind)
  batch_size = 32
  epochs = 3
  optimizer = Adam(lr=1e-2)
  seed = 0
  device = "cpu"
}}
"""


def test_streamed_and_in_memory_runs_give_identical_histories(tmp_path):
    path = table(tmp_path / "t.csv")
    results = []
    for i, extra in enumerate(("stream=false", "stream=true, workers=0",
                               "stream=true, workers=1")):
        spec = tmp_path / f"s{i}.net"
        spec.write_text(SPEC.format(path=path.as_posix(), extra=extra))
        results.append(runner.run(netdsl.load(spec), out=tmp_path / f"r{i}", progress=False))
    strip = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]
             for r in results]
    assert strip[0] == strip[1] == strip[2]
    assert strip[0][-1]["train.loss"] < strip[0][0]["train.loss"]
    assert any("data: streamed from disk" in n and "read by 1 DataLoader worker" in n
               for n in results[2]["notes"])


def test_the_choice_is_automatic_from_the_size_and_reported(tmp_path, monkeypatch):
    path = table(tmp_path / "t.csv")
    kw = dict(path=str(path), targets="kind")
    d = load_data("CSV", **kw)
    assert not d.info.streamed and "loaded into memory" in d.info.loading
    monkeypatch.setenv("NETDSL_IN_MEMORY_LIMIT", "4K")
    d = load_data("CSV", workers=0, **kw)
    size = path.stat().st_size / 1024
    assert d.info.loading_note() == (
        f"data: streamed from disk ({size:,.1f} KB of CSV text; more than the in-memory "
        "limit of 4.0 KB; read by the training process)")


def test_a_bad_row_or_label_anywhere_is_found_before_training(tmp_path):
    path = table(tmp_path / "t.csv", extra="0.1,oops,0.3,1.0,cat\n")
    with pytest.raises(DataError, match=rf"t.csv:{ROWS + 2}: column 'b' is not numeric"):
        load_data("CSV", path=str(path), targets="kind", stream=True)
    bad = tmp_path / "labels.csv"
    bad.write_text("x,label\n" + "".join(f"{i},{i % 3}\n" for i in range(50)) + "7,200\n")
    check = [{"output": "logits", "loss": "CrossEntropyLoss", "classes": 3}]
    for stream in (False, True):
        with pytest.raises(LabelError, match="holds labels 0..200"):
            load_data("CSV", path=str(bad), targets="label", stream=stream, label_check=check)
