"""What the issue asks of `netdsl run --json` / `netdsl.fit` / `netdsl.evaluate` at top level
(model, epochs, train_loss, test_loss, test_accuracy per output, samples_per_second,
run_dir), KLDivLoss, the `workers` setting and `--set` key mistakes. Small synthetic data."""

from __future__ import annotations

import io
import json

import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import NetdslError
from netdsl.runtime import loop
from netdsl.runtime.data import load_data
from netdsl.runtime.overrides import parse_set

NET = """\
model Net {
  input x: [8]
  x -> Linear(16) -> ReLU -> Linear(3) -> logits
  output logits
}
train Net {
  data = synthetic(shape=8, num_classes=3, n=128, n_test=32)
  batch_size = 16
  epochs = 2
  optimizer = SGD(lr=0.1, momentum=0.9)
  seed = 3
}
"""

TWO_HEADS = """\
model Two {
  input x: [8]
  h = x -> Linear(16) -> ReLU
  a = h -> Linear(3)
  b = h -> Linear(3)
  output a, b
}
train Two {
  data = synthetic(shape=8, num_classes=3, n=128, n_test=32)
  batch_size = 16
  epochs = 1
  loss = 0.5 * CrossEntropyLoss(a, label) + 0.5 * CrossEntropyLoss(b, label)
  optimizer = SGD(lr=0.1)
}
"""

HEADLINE = ("model", "epochs", "train_loss", "test_loss", "test_accuracy",
            "samples_per_second", "run_dir")


def _write(tmp_path, text, name="net.net"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_has_the_issue_keys_at_top_level_and_fit_returns_the_same(tmp_path, capsys):
    path = _write(tmp_path, NET)
    main(["run", str(path), "--json", "--out", str(tmp_path / "a")])
    r = json.loads(capsys.readouterr().out)
    assert list(r)[:2] == ["spec", "model"] and set(HEADLINE) <= set(r)
    assert r["model"] == "Net" and r["epochs"] == 2
    assert r["train_loss"] == r["final"]["train.loss"]
    assert r["test_loss"] == r["test"]["test.loss"]
    assert r["test_accuracy"] == r["test"]["test.accuracy"] and 0 <= r["test_accuracy"] <= 1
    assert r["samples_per_second"] > 0 and r["run_dir"].startswith(str(tmp_path / "a"))
    assert r["val_loss"] is None  # no validation split here

    f = netdsl.fit(path, out=tmp_path / "b", progress=False)
    for key in HEADLINE[:5]:
        assert f[key] == r[key], key  # same seed on the cpu: the same numbers
    assert f["samples_per_second"] > 0 and f["run_dir"].startswith(str(tmp_path / "b"))

    ev = netdsl.evaluate(path, f["files"]["weights"])
    assert ev["loss"] == pytest.approx(f["test_loss"]) and ev["accuracy"] == f["test_accuracy"]
    main(["eval", str(path), "-w", f["files"]["weights"], "--json"])
    assert json.loads(capsys.readouterr().out)["accuracy"] == ev["accuracy"]


def test_test_accuracy_is_per_output_for_a_multi_output_net(tmp_path):
    r = netdsl.fit(_write(tmp_path, TWO_HEADS), out=tmp_path, progress=False)
    acc = r["test_accuracy"]
    assert set(acc) == {"a", "b"}
    assert acc["a"] == r["test"]["test.a.accuracy"] and acc["b"] == r["test"]["test.b.accuracy"]
    assert r["test_loss"] == r["test"]["test.loss"]
    stored = json.loads((tmp_path / r["run_dir"].rsplit("/", 1)[1] / "result.json").read_text())
    assert stored["test_accuracy"] == acc


def test_regression_runs_have_no_accuracy_but_report_mae_and_rmse(tmp_path):
    text = NET.replace("num_classes=3", "target_shape=3").replace(
        "  seed = 3\n", "  loss = MSELoss(logits, target)\n  metrics = [mae, rmse]\n")
    r = netdsl.fit(_write(tmp_path, text), out=tmp_path, progress=False)
    assert r["test_accuracy"] is None and r["test_loss"] == r["test"]["test.loss"]
    assert {"test.mae", "test.rmse"} <= set(r["test"])
    assert r["test"]["test.rmse"] == pytest.approx(r["test"]["test.loss"] ** 0.5, rel=1e-5)


KL = """\
model Soft {
  input x: [4]
  x -> Linear(3) -> LogSoftmax(dim=1) -> p
  output p
}
train Soft {
  data = tensors(X=[[1, 2, 0, 1], [3, 4, 1, 0], [5, 6, 2, 2], [0, 1, 0, 3], [2, 2, 2, 2]],
                 y=[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0],
                    [0.5, 0.5, 0.0]])
  batch_size = 2
  epochs = 3
  loss = KLDivLoss(p, target, reduction="batchmean")
  optimizer = SGD(lr=0.1)
}
"""


def test_kldivloss_batchmean_is_averaged_per_sample_over_uneven_batches():
    spec = netdsl.loads(KL, "kl.net")
    settings = spec.plan().settings()
    data = load_data(**settings["data"])
    r = loop.fit(spec.build, data, settings, progress=loop.Progress(io.StringIO()))
    assert r["status"] == "completed" and r["epochs"] == 3
    model = r["model"]
    got = loop.evaluate(model, data, settings, split="train")["train.loss"]
    with torch.no_grad():  # batches of 2, 2, 1 must give the whole set's per-sample KL
        want = torch.nn.KLDivLoss(reduction="batchmean")(model(data.train["X"]), data.train["y"])
    assert got == pytest.approx(float(want), rel=1e-5)


def test_workers_is_a_setting_with_a_note_and_validated():
    spec = netdsl.loads(NET.replace("  seed = 3\n", "  workers = 4\n"), "w.net")
    plan = spec.plan()
    assert plan.workers == 4
    assert any("workers = 4 has no effect" in n.message for n in plan.notes)
    with pytest.raises(NetdslError, match=r"workers=-1 is invalid"):
        spec.plan(workers=-1)
    with pytest.raises(NetdslError) as exc:
        netdsl.loads(NET.replace("  seed = 3\n", "  num_workers = 2\n"), "w.net").plan()
    assert "write workers" in str(exc.value.diagnostics[0].hint)


def test_set_without_a_key_says_so():
    with pytest.raises(NetdslError) as exc:
        parse_set("=3")
    assert exc.value.diagnostics[0].message == "no key before '=' in '=3'"


def test_the_progress_bar_shows_steps_samples_per_second_running_loss_and_eta(tmp_path):
    import io

    from netdsl.runtime import runner

    out = io.StringIO()
    text = NET.replace("n=128", "n=2048").replace("epochs = 2", "epochs = 1")
    runner.run(netdsl.loads(text, "t.net"), out=tmp_path, stream=out, bar=True)
    shown = out.getvalue()
    assert "epoch 1/1" in shown and "/128" in shown  # steps of the epoch
    assert "samples/s=" in shown and "loss=" in shown and "<" in shown  # rate, loss, ETA


def test_kldivloss_reports_no_mae_unasked_and_the_cli_prints_samples_per_second(
        tmp_path, capsys):
    plan = netdsl.loads(KL, "kl.net").plan()
    assert plan.metrics == () and plan.loss[0].loss.reduction == "batchmean"
    main(["run", str(_write(tmp_path, KL)), "--out", str(tmp_path), "--epochs", "1"])
    assert ".mae" not in capsys.readouterr().out
    main(["run", str(_write(tmp_path, NET)), "--out", str(tmp_path)])
    assert "2 epoch(s), " in capsys.readouterr().out.split("test.accuracy")[1]
