"""Fashion-MNIST: our IDX reader on the real files and on damaged copies, and the splits."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from keraslab.data import DATASETS, Splits, describe, load, split_indices, verify
from keraslab.data import fashion_mnist as fm
from keraslab.errors import KeraslabError


@pytest.fixture(scope="session")
def full(shared_data_dir) -> Splits:
    return load("fashion_mnist", data_dir=shared_data_dir, val_fraction=0)


def test_real_files_parse_with_expected_shapes(shared_data_dir):
    folder = shared_data_dir / "fashion-mnist"
    for spec in fm.FILES.values():
        arr = fm.read_file(folder / spec.name, spec)
        assert arr.dtype == np.uint8
        assert arr.shape == ((spec.count, 28, 28) if spec.magic == 2051 else (spec.count,))
        assert not arr.flags.writeable


def test_full_training_set_matches_manifest(full):
    assert full.name == "fashion_mnist" and full.kind == "image"
    assert full.class_names[0] == "T-shirt/top" and full.class_names[9] == "Ankle boot"
    assert full.x_train.shape == (60000, 28, 28) and full.x_test.shape == (10000, 28, 28)
    assert full.x_val.shape == (0, 28, 28) and full.y_val.shape == (0,)
    assert full.x_train.dtype == np.float32 and full.y_train.dtype == np.int64
    assert 0.0 <= full.x_train.min() and full.x_train.max() <= 1.0
    assert np.all(np.bincount(full.y_train) == 6000)
    assert np.all(np.bincount(full.y_test) == 1000)
    assert full.x_train.mean(dtype=np.float64) == pytest.approx(0.286041, abs=5e-7)
    assert full.x_train.std(dtype=np.float64) == pytest.approx(0.353024, abs=5e-7)
    assert full.x_test.mean(dtype=np.float64) == pytest.approx(0.286849, abs=5e-7)
    assert full.source.endswith("fashion-mnist")


def test_default_split_sizes_and_info(shared_data_dir):
    s = load("fashion-mnist", data_dir=shared_data_dir)
    assert s.counts() == {"train": 54000, "val": 6000, "test": 10000}
    assert s.val_fraction == DATASETS["fashion_mnist"].val_fraction == 0.1
    assert s.input_shape == (28, 28) and s.num_classes == 10
    assert "54000" in repr(s)


def test_returned_arrays_are_private_copies(shared_data_dir):
    a = load("fashion_mnist", data_dir=shared_data_dir, test_subset=5)
    a.x_test[:] = 7.0
    a.y_test[:] = 3
    b = load("fashion_mnist", data_dir=shared_data_dir, test_subset=5)
    assert b.x_test.max() <= 1.0 and not np.all(b.y_test == 3)


def test_test_set_is_file_order_and_untouched_by_seed_and_val_fraction(shared_data_dir, full):
    a = load("fashion_mnist", data_dir=shared_data_dir, seed=1, val_fraction=0.3)
    np.testing.assert_array_equal(a.y_test, full.y_test)
    np.testing.assert_array_equal(a.x_test, full.x_test)
    raw = fm.read_folder(shared_data_dir / "fashion-mnist")
    np.testing.assert_array_equal(a.y_test, raw.y_test)


def test_validation_split_deterministic_disjoint_and_seeded(shared_data_dir):
    a1 = load("fashion_mnist", data_dir=shared_data_dir, seed=3)
    a2 = load("fashion_mnist", data_dir=shared_data_dir, seed=3)
    b = load("fashion_mnist", data_dir=shared_data_dir, seed=4)
    np.testing.assert_array_equal(a1.x_val, a2.x_val)
    np.testing.assert_array_equal(a1.y_train, a2.y_train)
    assert not np.array_equal(a1.y_val, b.y_val)
    # The 60,000 training images are all distinct (MANIFEST), so bytes identify examples.
    train = {row.tobytes() for row in a1.x_train}
    val = {row.tobytes() for row in a1.x_val}
    assert len(train) == 54000 and len(val) == 6000 and not train & val
    tr, va, _ = split_indices(60000, 10000, seed=3, val_fraction=0.1)
    raw = fm.read_folder(shared_data_dir / "fashion-mnist")
    np.testing.assert_array_equal(a1.y_val, raw.y_train[va])


def test_subsets_are_deterministic(shared_data_dir):
    a = load("fashion_mnist", data_dir=shared_data_dir, train_subset=500, test_subset=200, seed=9)
    b = load("fashion_mnist", data_dir=shared_data_dir, train_subset=500, test_subset=200, seed=9)
    assert a.counts() == {"train": 500, "val": 6000, "test": 200}
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    full_val = load("fashion_mnist", data_dir=shared_data_dir, seed=9).x_val
    np.testing.assert_array_equal(a.x_val, full_val)  # a subset never moves the validation set


def test_describe_and_verify(shared_data_dir):
    d = describe("fashion-mnist", data_dir=shared_data_dir)
    assert d["counts"] == {"train": 54000, "val": 6000, "test": 10000}
    assert sum(d["class_counts"]["test"].values()) == 10000
    assert d["looked_at"][0]["place"] == "data_dir" and d["looked_at"][0]["status"] == "used"
    import json

    json.dumps(d)
    v = verify("fashion_mnist", data_dir=shared_data_dir)
    assert [f["count"] for f in v["files"]] == [60000, 60000, 10000, 10000]
    assert v["class_counts"]["train"]["Bag"] == 6000


# --------------------------------------------------------------------------- damaged copies


def _labels_raw(shared_data_dir) -> bytes:
    with gzip.open(shared_data_dir / "fashion-mnist" / "train-labels-idx1-ubyte.gz") as fh:
        return fh.read()


def _write_gz(path, raw: bytes):
    with gzip.open(path, "wb") as fh:
        fh.write(raw)
    return path


def _damage(raw: bytes, how: str) -> bytes:
    if how == "truncated":
        return raw[:-100]
    if how == "overlong":
        return raw + b"\0" * 5
    if how == "wrong magic":
        return struct.pack(">I", 2051) + raw[4:]
    if how == "wrong count":  # consistent header and payload, just not 60,000
        return struct.pack(">II", 2049, 59999) + raw[8:-1]
    if how == "bad checksum":  # structurally perfect, one label changed
        b = bytearray(raw)
        b[100] = (b[100] + 1) % 10
        return bytes(b)
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how, expect",
    [
        ("truncated", "truncated"),
        ("overlong", "longer than its header says"),
        ("wrong magic", "magic number 2051, expected 2049"),
        ("wrong count", "holds 59,999 items, expected 60,000"),
        ("bad checksum", "sha256 of the decompressed content is"),
    ],
)
def test_damaged_label_file_is_refused_clearly(shared_data_dir, tmp_path, how, expect):
    spec = fm.FILES["train_labels"]
    path = _write_gz(tmp_path / spec.name, _damage(_labels_raw(shared_data_dir), how))
    with pytest.raises(KeraslabError) as info:
        fm.read_file(path, spec)
    err = info.value
    assert expect in err.message and str(path) in err.message
    assert err.hint and "\n" not in err.one_line()
    if how == "bad checksum":
        assert spec.sha256 in err.message  # expected and actual digests both named


def test_not_gzip_and_bad_image_dims(tmp_path):
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(KeraslabError, match="not a readable gzip file"):
        fm.read_idx(junk, magic=2049)
    small = _write_gz(tmp_path / "imgs.gz", struct.pack(">IIII", 2051, 1, 27, 28) + bytes(27 * 28))
    with pytest.raises(KeraslabError, match="27x28 images, expected 28x28"):
        fm.read_idx(small, magic=2051)
    ok = _write_gz(tmp_path / "ok.gz", struct.pack(">IIII", 2051, 2, 28, 28) + bytes(2 * 784))
    assert fm.read_idx(ok, magic=2051).shape == (2, 28, 28)


def test_label_file_of_the_wrong_split_is_refused(shared_data_dir, tmp_path):
    real = shared_data_dir / "fashion-mnist"
    for spec in fm.FILES.values():
        (tmp_path / spec.name).symlink_to(real / spec.name)
    # Swap the test labels in as train labels: each file is fine alone, the pair is not.
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").symlink_to(real / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(KeraslabError, match="holds 10,000 items, expected 60,000"):
        fm.read_folder(tmp_path)
