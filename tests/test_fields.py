"""Samples as named fields and the objectives they make trainable: two inputs and two outputs,
a siamese pair, an autoencoder on real MNIST, a U-Net on dense masks, a byte/character
language model on a text file. Each trains for real (small sizes, loss goes down); the data
layer's new pieces (Text windows, siamese pairs, dense metrics) are checked against values
worked out by hand; compiled scripts train like `netdsl run`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mnist_data import DATA, needs_mnist

import netdsl
from netdsl.runtime.data import DamagedFileError, DataError, LabelError, load_data
from netdsl.runtime.loop import Term

ROOT = Path(__file__).resolve().parents[1]

TEXT = (
    "the quick brown fox jumps over the lazy dog. a spec is data; a model is a graph. "
    "netdsl trains what users train, on data of any size, as fast as careful torch code. "
) * 40


def fit(spec, tmp_path, **settings):
    return netdsl.fit(spec, out=tmp_path, progress=False, device="cpu", **settings)


def losses(r) -> list[float]:
    return [h["train.loss"] for h in r["history"]]


# ---- training for real ------------------------------------------------------------------------
def test_two_inputs_and_two_outputs_train(tmp_path):
    r = fit(ROOT / "specs" / "image_and_table.net", tmp_path, epochs=4, data__n=1024,
            optimizer__lr=3e-3)
    ls = losses(r)
    assert ls == sorted(ls, reverse=True) and ls[-1] < 0.85 * ls[0], ls
    assert {"test.cls.accuracy", "test.score.mae"} <= set(r["test"])
    assert r["history"][-1]["train.cls.loss"] < r["history"][0]["train.cls.loss"]
    assert r["history"][-1]["train.score.loss"] < r["history"][0]["train.score.loss"]


@needs_mnist
def test_a_siamese_pair_with_a_shared_encoder_trains_on_mnist_pairs(tmp_path):
    r = fit(ROOT / "specs" / "siamese.net", tmp_path, epochs=2, data__limit=2000,
            data_root=DATA)
    ls = losses(r)
    assert ls[-1] < 0.8 * ls[0], ls
    assert r["test"]["test.accuracy"] > 0.7, r["test"]
    enc = [n for n, _ in r.model.named_parameters() if "enc" in n]
    assert len(enc) == 6  # one encoder: 3 layers x (weight, bias), applied twice


@needs_mnist
def test_a_convolutional_autoencoder_trains_against_its_own_input(tmp_path):
    r = fit(ROOT / "specs" / "autoencoder.net", tmp_path, epochs=2, data__limit=2000,
            batch_size=32, data_root=DATA)
    ls = losses(r)
    assert ls[-1] < 0.5 * ls[0], ls
    data = load_data("MNIST", root=DATA, limit=64,
                     transforms=[["ToTensor", {}]])
    x = data.test["image"]
    with torch.no_grad():
        recon = r.model(x)
    # a trained autoencoder beats predicting the mean image by far
    assert nnf_mse(recon, x) < 0.5 * nnf_mse(x.mean(0, keepdim=True).expand_as(x), x)


def nnf_mse(a, b) -> float:
    return float(((a - b) ** 2).mean())


def test_a_small_unet_learns_synthetic_masks(tmp_path):
    r = fit(ROOT / "specs" / "segmentation.net", tmp_path, epochs=3, data__n=128,
            data__n_test=32)
    ls = losses(r)
    assert ls[-1] < 0.8 * ls[0], ls
    assert r["test"]["test.accuracy"] > 0.6 and r["test"]["test.miou"] > 0.4, r["test"]


def test_a_byte_level_decoder_learns_a_text_file(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    r = fit(ROOT / "specs" / "char_lm.net", tmp_path, epochs=4, data__path=str(text))
    ls = losses(r)
    assert ls[-1] < 0.7 * ls[0], ls
    last = r["history"][-1]
    assert last["val.perplexity"] == pytest.approx(math.exp(last["val.loss"]), rel=1e-9)
    assert last["val.perplexity"] < 40  # of 256 possible bytes


# ---- the Text source ---------------------------------------------------------------------------
def test_text_windows_stride_and_held_out_spans(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(bytes(range(100)))
    d = load_data("Text", path=str(f), tokens="byte", block_size=8, stride=3, val=2, test=0.2)
    ids = torch.arange(100)
    # test: the last 20 tokens, in disjoint windows of 8 (and the next token of each)
    assert d.test["tokens"].tolist() == [list(range(80, 88)), list(range(88, 96))]
    assert torch.equal(d.test["next"], d.test["tokens"] + 1)
    # val: 2 windows before them; train: windows every 3 tokens before val
    assert d.val["tokens"].tolist() == [list(range(64, 72)), list(range(72, 80))]
    train = d.train["tokens"]
    assert torch.equal(train[:, 0], torch.arange(0, 3 * train.shape[0], 3))
    assert int(d.train["next"].max()) <= 64  # at most the first held-out token, as a target
    assert torch.equal(d.train["next"], train + 1)
    assert torch.equal(ids[train], train)
    assert d.info.fields["tokens"].kind == "input" and d.info.fields["next"].kind == "class"


def test_text_characters_and_token_id_files(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("abcabcabd" * 4, encoding="utf-8")
    d = load_data("Text", path=str(f), tokens="char", block_size=4)
    assert d.info.fields["next"].classes == ["a", "b", "c", "d"]
    assert d.train["tokens"][0].tolist() == [0, 1, 2, 0]
    ids = torch.tensor([5, 60000, 7, 8, 9, 10], dtype=torch.int32)
    b = tmp_path / "ids.bin"
    b.write_bytes(ids.numpy().astype("<u2").tobytes())
    d = load_data("Text", path=str(b), tokens="uint16", block_size=2)
    assert d.train["tokens"].tolist() == [[5, 60000], [7, 8]]
    b.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DamagedFileError, match="not a whole number of uint16"):
        load_data("Text", path=str(b), tokens="uint16", block_size=2)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DamagedFileError, match='tokens="byte"'):
        load_data("Text", path=str(tmp_path / "latin.txt"), tokens="char", block_size=2)
    with pytest.raises(DataError, match="no window of 8 tokens to train on"):
        load_data("Text", path=str(f), tokens="char", block_size=8, val=0.9)


# ---- siamese pairs -----------------------------------------------------------------------------
@needs_mnist
def test_mnist_pairs_match_half_the_time_and_are_seeded():
    base = load_data("MNIST", root=DATA, limit=1000)
    d = load_data("MNIST", root=DATA, limit=1000, pairs=True, seed=1)
    assert set(d.train.fields) == {"left", "right", "same"}
    assert torch.equal(d.train["left"], base.train["image"])
    labels, images = base.train["label"], base.train["image"]
    # every right image is an image of the split, and `same` says whether the labels match
    flat = images.flatten(1)
    index = {bytes(row.numpy().tobytes()): i for i, row in enumerate(flat)}
    j = torch.tensor([index[bytes(r.numpy().tobytes())] for r in d.train["right"].flatten(1)])
    assert torch.equal(d.train["same"], (labels[j] == labels).long())
    assert 0.45 < d.train["same"].float().mean() < 0.55
    assert not bool((j == torch.arange(len(j))).any())  # never an image with itself
    again = load_data("MNIST", root=DATA, limit=1000, pairs=True, seed=1)
    assert torch.equal(again.train["right"], d.train["right"])
    other = load_data("MNIST", root=DATA, limit=1000, pairs=True, seed=2)
    assert not torch.equal(other.train["right"], d.train["right"])
    assert d.info.fields["same"].classes == ["different", "same"]


# ---- dense metrics -----------------------------------------------------------------------------
def test_pixel_accuracy_and_mean_iou_against_a_hand_count():
    g = torch.Generator().manual_seed(0)
    spec = {"name": "CrossEntropyLoss", "kwargs": {"ignore_index": 255}, "output": "logits",
            "weight": 1.0, "field": "mask", "target": "class", "metrics": ["accuracy", "miou"],
            "classes": 3}
    term = Term(spec, "cpu")
    sums = None
    preds, truths = [], []
    for _ in range(3):
        out = torch.randn(4, 3, 5, 6, generator=g)
        t = torch.randint(0, 3, (4, 5, 6), generator=g)
        t[0, 0] = 255  # ignored pixels count nowhere
        vals = [float(v) for v in term.record(out, t, term.fn(out, t))]
        sums = vals if sums is None else [a + b for a, b in zip(sums, vals)]
        keep = t != 255
        preds.append(out.argmax(1)[keep])
        truths.append(t[keep])
    got = term.finish(sums, 12)
    p, t = torch.cat(preds), torch.cat(truths)
    assert got["accuracy"] == pytest.approx(float((p == t).float().mean()))
    ious = [float(((p == c) & (t == c)).sum() / ((p == c) | (t == c)).sum()) for c in range(3)]
    assert got["miou"] == pytest.approx(sum(ious) / 3)


def test_classes_last_scores_train_like_permuted_ones():
    spec = {"name": "CrossEntropyLoss", "kwargs": {}, "output": "logits", "weight": 1.0,
            "field": "next", "target": "class", "metrics": ["accuracy"], "classes": 7,
            "classes_last": True}
    term = Term(spec, "cpu")
    out = torch.randn(2, 5, 7)
    t = torch.randint(0, 7, (2, 5))
    want = torch.nn.functional.cross_entropy(out.reshape(-1, 7), t.reshape(-1))
    assert torch.allclose(term.fn(term.scores(out), t), want)


# ---- compiled scripts ----------------------------------------------------------------------------
def test_compiled_scripts_train_the_new_objectives_like_netdsl_run(tmp_path):
    from test_compile_train import compiled_file, run_netdsl, run_script, same_result

    text = tmp_path / "corpus.txt"
    text.write_text(TEXT[:3000], encoding="utf-8")
    spec = (ROOT / "specs" / "char_lm.net").read_text(encoding="utf-8")
    spec = spec.replace('path="README.md"', f'path="{text.as_posix()}"')
    spec = spec.replace("epochs = 10", "epochs = 1")
    lm = tmp_path / "lm.net"
    lm.write_text(spec, encoding="utf-8")
    for path, settings in ((lm, {}), (ROOT / "specs" / "segmentation.net", {"epochs": 1})):
        file = compiled_file(path, tmp_path)
        args = [a for k, v in settings.items() for a in (f"--{k}", str(v))]
        got = run_script(file, *args, "--out", str(tmp_path / f"{path.stem}-out"), cwd=tmp_path)
        same_result(got, run_netdsl(path, None, tmp_path, **settings))


# ---- image/mask folders ------------------------------------------------------------------------
def make_shapes(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """n RGB images of a rectangle (class 1) and a disc (class 2) on dark noise, and their
    masks (grayscale PNGs of class ids) under the same names."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(6, size // 2, 2)
        mask[y0:y0 + h, x0:x0 + w] = 1
        cx, cy, r = *rng.integers(6, size - 6, 2), rng.integers(3, 7)
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 2
        img[mask == 1] = rng.integers(120, 256, 3)
        img[mask == 2] = rng.integers(120, 256, 3)
        Image.fromarray(img).save(root / "images" / f"{i:04d}.jpg", quality=95)
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i:04d}.png")
    return root


def mask_spec(tmp_path, root: Path, extra: str = "", name: str = "seg.net") -> Path:
    text = (ROOT / "specs" / "segmentation.net").read_text(encoding="utf-8")
    data = (f'data = MaskFolder(images="{(root / "images").as_posix()}", '
            f'masks="{(root / "masks").as_posix()}", val=0.25, {extra}'
            "transform=[ToTensor, Normalize(0.5, 0.5)])")
    text = text.replace("data = synthetic(n=256, n_test=64)", data)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_unet_trains_on_an_image_and_mask_folder_streamed_or_not(tmp_path):
    root = make_shapes(tmp_path / "shapes", 192)
    memory = fit(mask_spec(tmp_path, root, "stream=false, "), tmp_path / "a")
    ls = losses(memory)
    assert ls[-1] < 0.7 * ls[0], ls
    assert memory["history"][-1]["val.miou"] > 0.5, memory["history"][-1]
    streamed = fit(mask_spec(tmp_path, root, "stream=true, workers=1, ", "s.net"),
                   tmp_path / "b")
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in memory["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in streamed["history"]] == strip
    assert any("data: streamed from disk (192 images with masks" in n for n in streamed["notes"])


def test_masks_that_do_not_match_their_images_are_named(tmp_path, capsys):
    from netdsl.cli import main

    root = make_shapes(tmp_path / "shapes", 6)
    (root / "masks" / "0002.png").unlink()
    (root / "masks" / "0004.png").rename(root / "masks" / "0004b.png")
    path = mask_spec(tmp_path, root)
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    assert (f"seg.net:24:10: error[E406]: the mask folder does not match the image folder: "
            f"2 images without a mask in '{(root / 'masks').as_posix()}' (0002, 0004); 1 mask "
            f"without an image in '{(root / 'images').as_posix()}' (0004b)") in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("stream", [False, True])
def test_a_mask_with_a_class_the_model_lacks_is_e412(tmp_path, capsys, stream):
    import numpy as np
    from PIL import Image

    from netdsl.cli import main

    root = make_shapes(tmp_path / "shapes", 8)
    bad = np.zeros((32, 32), np.uint8)
    bad[3, 5] = 7
    Image.fromarray(bad, mode="L").save(root / "masks" / "0006.png")
    path = mask_spec(tmp_path, root, f"stream={'true' if stream else 'false'}, workers=0, ")
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err and "E900" not in err
    assert "error[E412]: " in err and "the first is 7 at [3, 5]" in err
    assert "'logits' has 3 classes (0..2)" in err
    if stream:  # found as the batch is read: the file is named
        assert f"mask '{(root / 'masks' / '0006.png').as_posix()}'" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# ---- token files, streamed ---------------------------------------------------------------------
TOKEN_LM = """\
model LM {{
  input tokens: [T] int64 where T <= 32
  x = tokens -> Embedding({vocab}, 32)
  pos = arange(tokens.size(1)) -> Embedding(32, 32)
  logits = x + pos -> Linear(64) -> GELU -> Linear(300)
  output logits
}}
train LM {{
  data = Text(path="{path}", tokens="uint16", block_size=32, stride=8, val=0.1, {extra})
  loss = CrossEntropyLoss(logits, next, classes_last=true)
  metrics = [accuracy, perplexity]
  batch_size = 32
  epochs = 2
  optimizer = AdamW(lr=3e-3)
}}
"""


def token_file(tmp_path) -> Path:
    import numpy as np

    base = np.random.default_rng(0).integers(0, 300, 50).astype("<u2")
    path = tmp_path / "train.bin"  # nanoGPT's layout: uint16 ids, little-endian
    np.concatenate([np.roll(base, k) for k in range(200)]).tofile(path)
    return path


def test_a_token_file_streams_with_the_in_memory_history(tmp_path, monkeypatch):
    path = token_file(tmp_path)

    def spec(extra, name, vocab=300):
        p = tmp_path / name
        p.write_text(TOKEN_LM.format(path=path.as_posix(), extra=extra, vocab=vocab))
        return p

    memory = fit(spec("stream=false", "m.net"), tmp_path / "m")
    streamed = fit(spec("stream=true, workers=1", "s.net"), tmp_path / "s")
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in memory["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in streamed["history"]] == strip
    assert losses(memory)[-1] < 0.5 * losses(memory)[0]
    assert any("data: streamed from disk (" in n and "windows" in n for n in streamed["notes"])
    monkeypatch.setenv("NETDSL_IN_MEMORY_LIMIT", "64K")  # the automatic choice streams
    d = load_data("Text", path=str(path), tokens="uint16", block_size=32)
    assert d.info.streamed and d.train["tokens"].shape == (312, 32)
    # ids beyond the Embedding are found before training, without loading the file
    with pytest.raises(netdsl.NetdslError) as e:
        fit(spec("stream=true, workers=0", "bad.net", vocab=200), tmp_path / "b")
    d = e.value.diagnostics[0]
    assert d.code == "E412" and "takes ids 0..199" in d.message and "Embedding(" in d.hint


# ---- variable-length sequences -----------------------------------------------------------------
NAMES = ["anna", "bob", "charlotte", "dave", "eve", "frederick", "george", "hannah", "isabella"]

NAME_LM = """\
model NameLM {
  input tokens: [T] int64 where T <= 12
  input pad: [T] bool
  x = tokens -> Embedding(32, 32)
  pos = arange(tokens.size(1)) -> Embedding(12, 32)
  h = x + pos -> TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=true,
                                         src_key_padding_mask=pad, is_causal=true)
  logits = h -> Linear(32)
  output logits
}
train NameLM {
  data = Text(path="PATH", lines=true, block_size=12, val=0.1)
  loss = CrossEntropyLoss(logits, next, classes_last=true)
  metrics = [accuracy, perplexity]
  batch_size = 32
  epochs = 3
  optimizer = AdamW(lr=3e-3)
}
"""


def test_lines_are_samples_of_their_own_length_padded_per_batch(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("bob\n\nx\ncharlotte\nfrederick-the-great\n", encoding="utf-8")
    d = load_data("Text", path=str(f), tokens="byte", lines=True, block_size=8)
    assert d.train.n == 3  # the empty line and the one-letter line make no sample
    batch = next(iter(d.loader("train", 3, shuffle=False)))
    ids = [list(w.encode()) for w in ("bob", "charlotte", "frederick")]  # at most 8 + 1
    assert batch["tokens"].tolist() == [
        ids[0][:-1] + [0] * 6, ids[1][:-1], ids[2][:8]]
    assert batch["next"].tolist() == [
        ids[0][1:] + [-100] * 6, ids[1][1:], ids[2][1:9]]
    assert batch["pad"].tolist() == [[False] * 2 + [True] * 6, [False] * 8, [False] * 8]
    one = next(iter(d.loader("train", 1, shuffle=False)))  # padded to its own batch
    assert one["tokens"].shape == (1, 2)


def test_padding_counts_in_neither_the_loss_nor_the_accuracy():
    spec = {"name": "CrossEntropyLoss", "kwargs": {}, "output": "logits", "weight": 1.0,
            "field": "next", "target": "class", "metrics": ["accuracy"], "classes_last": True}
    term = Term(spec, "cpu")
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 5, 7, generator=g)
    t = torch.randint(0, 7, (2, 5), generator=g)
    t[0, 3:] = -100  # the first sequence is 3 long
    loss = term.fn(term.scores(out), t)
    real = t != -100
    want = torch.nn.functional.cross_entropy(out[real], t[real])
    assert torch.allclose(loss, want)
    vals = [float(v) for v in term.record(term.scores(out), t, loss)]
    got = term.finish(vals, 2)
    hits = (out.argmax(-1) == t)[real].float().mean()
    assert got["accuracy"] == pytest.approx(float(hits))


def test_a_decoder_with_a_padding_mask_learns_names(tmp_path):
    import random

    rng = random.Random(0)
    f = tmp_path / "names.txt"
    f.write_text("\n".join(rng.choice(NAMES) for _ in range(400)) + "\n", encoding="utf-8")
    spec = tmp_path / "names.net"
    spec.write_text(NAME_LM.replace("PATH", f.as_posix()), encoding="utf-8")
    r = fit(spec, tmp_path)
    ls = losses(r)
    assert ls[-1] < 0.5 * ls[0], ls
    assert r["history"][-1]["val.accuracy"] > 0.6
    # the mask reaches the model: a name's outputs do not depend on how long the batch is
    model = r.model.eval()
    d = load_data("Text", path=str(f), lines=True, block_size=12)
    short = min(range(d.train.n), key=lambda i: int(d.train["tokens"].lengths[i]))
    long = max(range(d.train.n), key=lambda i: int(d.train["tokens"].lengths[i]))
    rows = torch.tensor([short, long])
    both = {k: d.train[k].padded(rows) for k in ("tokens", "pad")}
    alone = {k: d.train[k].padded(rows[:1]) for k in ("tokens", "pad")}
    n = alone["tokens"].shape[1]
    with torch.no_grad():
        a = model(alone["tokens"], alone["pad"])[0, :n]
        b = model(both["tokens"], both["pad"])[0, :n]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_compiled_script_pads_lines_like_netdsl_run(tmp_path):
    from test_compile_train import compiled_file, run_netdsl, run_script, same_result

    f = tmp_path / "names.txt"
    f.write_text("\n".join(NAMES * 8) + "\n", encoding="utf-8")
    spec = tmp_path / "names.net"
    spec.write_text(NAME_LM.replace("PATH", f.as_posix()).replace("epochs = 3", "epochs = 1"),
                    encoding="utf-8")
    file = compiled_file(spec, tmp_path)
    got = run_script(file, "--out", str(tmp_path / "out"), cwd=tmp_path)
    same_result(got, run_netdsl(spec, None, tmp_path))


def test_a_mask_folder_with_void_pixels_ignored_loads_in_memory(tmp_path):
    import numpy as np
    from PIL import Image

    root = make_shapes(tmp_path / "shapes", 8)
    for f in (root / "masks").iterdir():  # VOC's habit: 255 marks pixels that count nowhere
        m = np.array(Image.open(f))
        m[0, :] = 255
        Image.fromarray(m, mode="L").save(f)
    path = mask_spec(tmp_path, root, "stream=false, ")
    text = path.read_text().replace("CrossEntropyLoss(logits, mask)",
                                    "CrossEntropyLoss(logits, mask, ignore_index=255)")
    path.write_text(text.replace("epochs = 4", "epochs = 1"))
    r = fit(path, tmp_path / "runs")
    assert r["epochs"] == 1 and 0 <= r["history"][0]["train.accuracy"] <= 1


def test_text_val_is_checked_like_train_and_test(tmp_path):
    f = tmp_path / "t.bin"
    f.write_bytes(bytes(range(100)) * 9 + bytes(range(200, 256)) * 2)  # high bytes at the end
    with pytest.raises(LabelError, match="takes ids 0..127"):
        load_data("Text", path=str(f), tokens="byte", block_size=8, val=0.1,
                  fields={"tokens": {"kind": "input", "vocab": 128}, "next": {"kind": "class"}})


def test_padded_losses_do_not_depend_on_the_evaluation_batch(tmp_path):
    import random

    rng = random.Random(1)
    f = tmp_path / "names.txt"
    f.write_text("\n".join(rng.choice(NAMES) for _ in range(120)) + "\n", encoding="utf-8")
    spec = tmp_path / "names.net"
    spec.write_text(NAME_LM.replace("PATH", f.as_posix()).replace("epochs = 3", "epochs = 1"),
                    encoding="utf-8")
    a = fit(spec, tmp_path / "a", eval_batch_size=1)["history"][-1]
    b = fit(spec, tmp_path / "b", eval_batch_size=5)["history"][-1]
    assert a["val.loss"] == pytest.approx(b["val.loss"], rel=1e-6)
    assert a["val.perplexity"] == pytest.approx(math.exp(a["val.loss"]), rel=1e-9)


@pytest.mark.parametrize("stream", [False, True])
def test_a_mask_takes_its_images_random_flips_and_crops(tmp_path, stream):
    import numpy as np
    from PIL import Image

    root = tmp_path / "coded"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):  # the image's red channel codes its mask: red = 10 * class + 5
        mask = rng.integers(0, 3, (12, 16)).astype(np.uint8)
        img = np.zeros((12, 16, 3), np.uint8)
        img[..., 0] = mask * 10 + 5
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    d = load_data("MaskFolder", images=str(root / "images"), masks=str(root / "masks"),
                  transforms=[["RandomCrop", {"size": [10, 10], "padding": 3}],
                              ["RandomHorizontalFlip", {}], "ToTensor"],
                  stream=stream, workers=0, val=4)
    for batch in d.loader("train", 4):
        red, mask = (batch["image"][:, 0] * 255).round().long(), batch["mask"]
        padded = red == 0  # a crop's padding: black in the image, ignored in the mask
        assert bool(padded.any()) and bool((mask[padded] == -100).all())
        assert torch.equal(mask[~padded], (red[~padded] - 5) // 10)
    val = next(iter(d.loader("val", 4)))  # evaluation: the center 10x10 of both
    assert val["mask"].shape == (4, 10, 10) and val["image"].shape == (4, 3, 10, 10)
    assert torch.equal(val["mask"], ((val["image"][:, 0] * 255).round().long() - 5) // 10)


@needs_mnist
def test_each_image_of_a_pair_is_augmented_on_its_own(tmp_path):
    d = load_data("MNIST", root=DATA, limit=256, pairs=True,
                  transforms=[["RandomCrop", {"size": 28, "padding": 4}], "ToTensor"])
    assert d.info.augmented == ["left", "right"]
    loader = d.loader("train", 64)
    left, right = loader._aug_params(0)
    assert not torch.equal(left[0]["i"], right[0]["i"])  # their own crop offsets
    batch = next(iter(loader))
    plain = next(iter(load_data("MNIST", root=DATA, limit=256, pairs=True,
                                transforms=["ToTensor"]).loader("train", 64)))
    assert batch["left"].shape == (64, 1, 28, 28) and torch.equal(batch["same"], plain["same"])
    assert not torch.equal(batch["left"], plain["left"])
