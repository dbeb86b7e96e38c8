"""The in-memory data layer: sources, transforms, splits and the device-resident loader."""

from __future__ import annotations

import os

import pytest
import torch
from mnist_data import DATA as DATA_ROOT
from mnist_data import HAVE_MNIST, needs_mnist

from netdsl.runtime.data import (
    Augment,
    DataError,
    DeviceLoader,
    load_data,
    parse_transforms,
    plan_transforms,
)

NORM = [("ToTensor", {}), ("Normalize", {"mean": (0.1307,), "std": (0.3081,)})]


@pytest.fixture(scope="module")
def mnist():
    if not HAVE_MNIST:
        pytest.skip(f"no MNIST under {DATA_ROOT}")
    return load_data("MNIST", root=DATA_ROOT, transforms=NORM)


# ---- MNIST from the shared root ---------------------------------------------------------


@needs_mnist
def test_mnist_sizes_shapes_and_metadata(mnist):
    assert mnist.train["image"].shape == (8000, 1, 28, 28)
    assert mnist.test["image"].shape == (2000, 1, 28, 28)
    assert mnist.train["image"].dtype == torch.float32 and mnist.train["label"].dtype == torch.int64
    info = mnist.info
    assert info.fields["image"].shape == (1, 28, 28) and info.fields["image"].dtype == "float32"
    assert info.fields["label"].kind == "class" and info.fields["label"].num_classes == 10
    assert info.fields["label"].shape == () and info.sizes == {"train": 8000, "test": 2000}


@needs_mnist
def test_mnist_values_match_torchvision_pipeline(mnist):
    import torchvision
    import torchvision.transforms as T

    tf = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    for train, split in ((True, mnist.train), (False, mnist.test)):
        ref = torchvision.datasets.MNIST(DATA_ROOT, train=train, download=False, transform=tf)
        for i in (0, 1, 777, len(ref) - 1):
            img, label = ref[i]
            torch.testing.assert_close(split["image"][i], img, rtol=0, atol=0)
            assert int(split["label"][i]) == label


@needs_mnist
def test_mnist_validation_split_sizes_and_determinism():
    a = load_data("MNIST", root=DATA_ROOT, transforms=NORM, val=0.1, seed=3)
    b = load_data("MNIST", root=DATA_ROOT, transforms=NORM, val=0.1, seed=3)
    c = load_data("MNIST", root=DATA_ROOT, transforms=NORM, val=500, seed=4)
    assert a.info.sizes == {"train": 7200, "val": 800, "test": 2000}
    assert c.info.sizes == {"train": 7500, "val": 500, "test": 2000}
    assert torch.equal(a.val["image"], b.val["image"]) and torch.equal(a.train["label"], b.train["label"])
    assert not torch.equal(a.val["label"][:500], c.val["label"])
    # train and val partition the original training set
    assert a.train["image"].shape[0] + a.val["image"].shape[0] == 8000


def test_missing_root_raises_clear_data_error(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as exc:
        load_data("MNIST", root=root, transforms=NORM)
    msg = str(exc.value)
    assert str(root / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg
    assert str(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") in msg
    assert "download=true" in msg
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_failed_download_raises_data_error(tmp_path, monkeypatch):
    import torchvision

    def refuse(self, *a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", refuse)
    with pytest.raises(DataError, match="Download failed: Error downloading") as exc:
        load_data("MNIST", root=tmp_path, download=True)
    assert "MNIST/raw/train-images-idx3-ubyte" in str(exc.value).replace(os.sep, "/")


# ---- the loader -------------------------------------------------------------------------


def _loader(**kw):
    x = torch.arange(103, dtype=torch.float32).view(103, 1)
    y = torch.arange(103)
    return DeviceLoader({"x": x, "y": y}, 10, **kw)


def test_loader_order_reproducible_per_seed_and_epoch():
    a, b = _loader(shuffle=True, seed=7), _loader(shuffle=True, seed=7)
    ya = [b["y"] for b in a.batches(2)]
    yb_ = [b["y"] for b in b.batches(2)]
    assert all(torch.equal(p, q) for p, q in zip(ya, yb_))
    e0 = torch.cat([b["y"] for b in a.batches(0)])
    e1 = torch.cat([b["y"] for b in a.batches(1)])
    assert not torch.equal(e0, e1)
    assert sorted(e0.tolist()) == list(range(103))  # a permutation, nothing lost
    other = torch.cat([b["y"] for b in _loader(shuffle=True, seed=8).batches(0)])
    assert not torch.equal(e0, other)


def test_loader_set_epoch_and_resume_mid_epoch():
    ld = _loader(shuffle=True, seed=1)
    full = [b["y"] for b in ld.batches(4)]
    ld.set_epoch(4, start_step=3)
    resumed = [b["y"] for b in ld]
    assert len(resumed) == len(full) - 3
    assert all(torch.equal(p, q) for p, q in zip(resumed, full[3:]))
    assert ld.epoch == 5  # a complete pass moves to the next epoch
    # without set_epoch, consecutive passes are consecutive epochs
    fresh = _loader(shuffle=True, seed=1)
    first = torch.cat([b["y"] for b in fresh])
    second = torch.cat([b["y"] for b in fresh])
    assert torch.equal(first, torch.cat([b["y"] for b in fresh.batches(0)]))
    assert torch.equal(second, torch.cat([b["y"] for b in fresh.batches(1)]))


def test_loader_lengths_and_drop_last():
    keep, drop = _loader(), _loader(drop_last=True)
    assert len(keep) == 11 and len(drop) == 10
    assert [b["y"].shape[0] for b in keep][-1] == 3
    sizes = [b["y"].shape[0] for b in drop]
    assert sizes == [10] * 10 and drop.num_samples == 100
    # no shuffle: plain slices in order, inputs and targets aligned
    xs, ys = zip(*((b["x"], b["y"]) for b in keep))
    assert torch.equal(torch.cat(ys), torch.arange(103))
    assert torch.equal(torch.cat(xs).view(-1).long(), torch.arange(103))


def test_loader_shuffled_batches_keep_inputs_and_targets_aligned():
    for b in _loader(shuffle=True, seed=2, drop_last=True).batches(0):
        xb, yb = b["x"], b["y"]
        assert torch.equal(xb.view(-1).long(), yb)


# ---- augmentation -----------------------------------------------------------------------


def test_random_crop_and_flip_are_per_sample():
    _, aug = plan_transforms(
        [("RandomCrop", {"size": 8, "padding": 2}), ("RandomHorizontalFlip", {"p": 0.5})],
        image=False, sample_shape=(1, 8, 8))
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(32, 1, 1, 1) + 1
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == (32, 1, 8, 8)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 8  # offsets and flips differ between samples of one batch
    # every output is a flip and/or shift of the padded input, padding filled with 0
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    for o in out:
        found = False
        for i in range(5):
            for j in range(5):
                win = padded[:, i:i + 8, j:j + 8]
                found |= torch.equal(o, win) or torch.equal(o, win.flip(-1))
        assert found


def test_random_crop_matches_torchvision_and_pushes_fill_through_normalize():
    import torchvision.transforms.functional as F

    # RandomCrop written before ToTensor/Normalize pads with the normalised value of black.
    spec = [("RandomCrop", {"size": 6, "padding": 3}), ("ToTensor", {}),
            ("Normalize", {"mean": (0.5,), "std": (0.25,)})]
    static, aug = plan_transforms(spec, image=True, sample_shape=(1, 6, 6))
    assert [t.name for t in static] == ["ToTensor", "Normalize"]
    raw = torch.randint(0, 256, (16, 1, 6, 6), dtype=torch.uint8)
    norm = F.normalize(raw.float().div(255), (0.5,), (0.25,))
    g = torch.Generator().manual_seed(5)
    params = aug.sample(16, g)
    out = aug.apply(norm, params)
    i, j = params[0]["i"], params[0]["j"]
    for k in range(16):
        ref = F.crop(F.pad(raw[k], 3, fill=0), int(i[k]), int(j[k]), 6, 6)
        ref = F.normalize(ref.float().div(255), (0.5,), (0.25,))
        torch.testing.assert_close(out[k], ref)


def test_crop_without_padding_changes_input_shape():
    d = load_data("synthetic", shape=(3, 10, 12), num_classes=3, n=20, n_test=4,
                  transforms=[("RandomCrop", {"size": (8, 9)})])
    assert d.info.fields["x"].shape == (3, 8, 9)
    xb = next(iter(d.loader("train", 5)))["x"]
    assert xb.shape == (5, 3, 8, 9)
    xt = next(iter(d.loader("test", 4)))["x"]  # evaluation: a center crop to the same size
    assert xt.shape == (4, 3, 8, 9)
    assert [t.name for t in d.info.eval_transforms] == ["CenterCrop"]


def test_loader_augmentation_reproducible_and_varies_by_epoch():
    d = load_data("synthetic", shape=(1, 6, 6), num_classes=2, n=40, n_test=0, seed=1,
                  transforms=[("RandomCrop", {"size": 6, "padding": 2}),
                              ("RandomHorizontalFlip", {})])
    a, b = d.loader("train", 8, seed=9), d.loader("train", 8, seed=9)
    xa = torch.cat([b["x"] for b in a.batches(3)])
    assert torch.equal(xa, torch.cat([b["x"] for b in b.batches(3)]))
    assert not torch.equal(xa, torch.cat([b["x"] for b in a.batches(4)]))
    b.set_epoch(3, start_step=2)
    assert torch.equal(torch.cat([b["x"] for b in b]), xa[16:])


def test_transform_validation():
    with pytest.raises(DataError, match="unknown transform"):
        parse_transforms([("Blur", {})])
    with pytest.raises(DataError, match="unknown argument"):
        parse_transforms([("Normalize", {"mean": 0.5, "std": 0.5, "scale": 2})])
    with pytest.raises(DataError, match="Normalize must come after ToTensor"):
        plan_transforms([("Normalize", {"mean": 0.5, "std": 0.5}), ("ToTensor", {})])
    with pytest.raises(DataError, match="before the random augmentations"):
        plan_transforms([("RandomHorizontalFlip", {}), ("Resize", {"size": 8})])
    assert not Augment()


# ---- other sources ----------------------------------------------------------------------


def test_csv_classification_and_regression(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("a,b,label,score\n1,2,0,0.5\n3,4,1,1.5\n5,6,2,2.5\n7,8,1,3.5\n")
    t = tmp_path / "test.csv"
    t.write_text("a,b,label,score\n9,10,2,4.5\n")
    d = load_data("CSV", path=p, test_path=t, features=["a", "b"], targets="label")
    assert d.train["features"].dtype == torch.float32 and d.train["features"].shape == (4, 2)
    assert d.train["target"].dtype == torch.int64 and d.train["target"].tolist() == [0, 1, 2, 1]
    assert d.info.fields["target"].kind == "class" and d.info.fields["target"].num_classes == 3
    assert d.info.sizes == {"train": 4, "test": 1}
    r = load_data("csv", path=p, features=["a", "b"], targets=["score"], task="regression",
                  val=1, seed=0)
    assert r.train["target"].dtype == torch.float32 and r.info.fields["target"].shape == (1,)
    assert r.info.sizes == {"train": 3, "val": 1}
    both = load_data("csv", path=p, targets=["label", "score"])  # features: every other column
    assert both.info.fields["target"].kind == "values" and both.info.fields["target"].shape == (2,)
    assert both.info.fields["features"].shape == (2,)
    with pytest.raises(DataError, match="no column 'nope'"):
        load_data("csv", path=p, targets="nope")


def test_inline_tensors():
    d = load_data("tensors", X=[[1, 2], [3, 4], [5, 6]], y=[2.0, 4.0, 6.0])
    assert d.train["X"].dtype == torch.float32 and d.train["X"].tolist() == [[1, 2], [3, 4], [5, 6]]
    assert d.info.fields["y"].kind == "values" and d.train["y"].shape == (3, 1)
    c = load_data("inline", X=[[1, 2], [3, 4], [5, 6]], y=[2, 4, 6], task="regression")
    assert c.train["y"].dtype == torch.float32
    k = load_data("tensors", X=[[0.0], [1.0]], y=[0, 1], X_test=[[2.0]], y_test=[1])
    assert k.info.fields["y"].kind == "class" and k.info.fields["y"].num_classes == 2
    assert k.test["y"].tolist() == [1]
    batches = list(d.loader("train", 2, shuffle=False))
    assert [b["X"].shape[0] for b in batches] == [2, 1]
    # Normalize works per feature on tables and on scalar inputs
    n = load_data("tensors", X=[[1.0, 10.0], [3.0, 30.0]], y=[0, 1],
                  transforms=[("Normalize", {"mean": (2.0, 20.0), "std": (1.0, 10.0)})])
    assert n.train["X"].tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    s = load_data("tensors", X=[1.0, 2.0, 3.0], y=[0, 1, 0],
                  transforms=[("Normalize", {"mean": 2.0, "std": 1.0})])
    assert s.train["X"].tolist() == [-1.0, 0.0, 1.0] and s.info.fields["X"].shape == ()


def test_synthetic_is_seeded_and_learnable_shape():
    a = load_data("synthetic", shape=(1, 8, 8), num_classes=4, n=64, n_test=16, seed=3)
    b = load_data("synthetic", shape=(1, 8, 8), num_classes=4, n=64, n_test=16, seed=3)
    assert torch.equal(a.train["x"], b.train["x"]) and torch.equal(a.test["y"], b.test["y"])
    assert a.info.fields["x"].shape == (1, 8, 8) and a.info.sizes == {"train": 64, "test": 16}
    assert a.train["y"].dtype == torch.int64 and int(a.train["y"].max()) < 4
    r = load_data("synthetic", shape=5, target_shape=(3,), n=10, n_test=0)
    assert r.info.fields["y"].kind == "values" and r.train["y"].shape == (10, 3) and r.test is None
    t = load_data("synthetic", shape=(7,), vocab=20, num_classes=2, n=8, n_test=2)
    assert t.train["x"].dtype == torch.int64 and int(t.train["x"].max()) < 20


def test_image_folder(tmp_path):
    from PIL import Image

    colours = {"cat": (200, 10, 10), "dog": (10, 200, 10)}
    for split, count in (("train", 3), ("test", 1)):
        for cls, rgb in colours.items():
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                size = (12 + i, 10)  # different sizes: Resize makes them stackable
                Image.new("RGB", size, rgb).save(tmp_path / split / cls / f"{i}.png")
    d = load_data("ImageFolder", path=tmp_path,
                  transforms=[("Resize", {"size": (8, 8)}), ("ToTensor", {}),
                              ("Normalize", {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})])
    assert d.info.classes == ["cat", "dog"] and d.info.fields["label"].num_classes == 2
    assert d.train["image"].shape == (6, 3, 8, 8) and d.test["image"].shape == (2, 3, 8, 8)
    assert d.train["label"].tolist() == [0, 0, 0, 1, 1, 1]
    expected = (torch.tensor(colours["dog"], dtype=torch.float32) / 255 - 0.5) / 0.5
    torch.testing.assert_close(d.test["image"][1, :, 4, 4], expected)
    g = load_data("ImageFolder", path=tmp_path / "train",
                  transforms=[("Resize", {"size": (8, 8)}), ("Grayscale", {})])
    assert g.info.fields["image"].shape == (1, 8, 8) and g.test is None
    with pytest.raises(DataError, match="different sizes"):
        load_data("ImageFolder", path=tmp_path / "train")


def test_cifar10_reads_raw_arrays_channels_first(tmp_path, monkeypatch):
    import pickle

    import numpy as np
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
             "test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    with pytest.raises(DataError, match="present but could not be read"):  # md5 mismatch
        load_data("CIFAR10", root=tmp_path)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    d = load_data("CIFAR10", root=tmp_path, transforms=[("ToTensor", {})])
    assert d.info.sizes == {"train": 10, "test": 2} and d.info.fields["image"].shape == (3, 32, 32)
    assert d.info.fields["label"].num_classes == 10 and d.train["label"].tolist() == [1, 7] * 5
    ref = torchvision.datasets.CIFAR10(tmp_path, train=False,
                                       transform=torchvision.transforms.ToTensor())
    torch.testing.assert_close(d.test["image"][1], ref[1][0], rtol=0, atol=0)
