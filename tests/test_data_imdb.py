"""IMDB reviews from the real archive: unpacking into the cache, counts, labels, texts, splits.

The archive is unpacked once per session (conftest's `imdb_found`); everything here reuses it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from keraslab.data import (
    Splits,
    describe,
    imdb,
    load,
    load_imdb_unsupervised,
    split_indices,
    verify,
)


@pytest.fixture(scope="session")
def full(imdb_found, shared_data_dir) -> Splits:
    return load("imdb", data_dir=shared_data_dir, val_fraction=0)


def test_unpacked_into_the_cache_never_beside_the_archive(
    imdb_found, shared_data_dir, keraslab_session_cache
):
    assert sorted(os.listdir(shared_data_dir / "imdb")) == ["MANIFEST.md", "aclImdb_v1.tar.gz"]
    assert imdb_found.extracted_to.parent == keraslab_session_cache / "imdb"
    assert imdb_found.source == str(shared_data_dir / "imdb" / "aclImdb_v1.tar.gz")
    assert imdb_found.parsed is not None and imdb_found.parsed.is_file()
    assert not list(imdb_found.extracted_to.parent.glob(".partial-*"))
    for group, expected in imdb.EXPECTED.items():
        assert len(os.listdir(imdb_found.tree / group)) == expected, group
    assert (
        (imdb_found.tree / "train/pos/0_9.txt")
        .read_text()
        .startswith("Bromwell High is a cartoon comedy.")
    )


def test_second_find_reuses_the_unpacked_tree(imdb_found, shared_data_dir):
    found, search = imdb.find(shared_data_dir)
    assert found.tree == imdb_found.tree
    assert "unpacked earlier" in search.attempts[-1].detail


def test_labeled_counts_labels_and_types(full):
    assert full.name == "imdb_reviews" and full.kind == "text"
    assert full.class_names == ["negative", "positive"]
    assert full.counts() == {"train": 25000, "val": 0, "test": 25000}
    assert full.x_train.dtype == object and full.y_train.dtype == np.int64
    assert all(isinstance(t, str) and t for t in full.x_train[:100])
    assert np.bincount(full.y_train).tolist() == [12500, 12500]
    assert np.bincount(full.y_test).tolist() == [12500, 12500]
    assert full.x_val.shape == (0,) and full.input_shape == ()


def test_known_reviews_have_their_labels_and_raw_html(full):
    train = dict(zip(full.x_train, full.y_train, strict=True))
    bromwell = [t for t in train if t.startswith("Bromwell High is a cartoon comedy.")]
    assert len(bromwell) == 1 and train[bromwell[0]] == 1
    shortest = "Primary plot!Primary direction!Poor interpretation."  # fewest words (MANIFEST)
    assert min(full.x_test, key=lambda t: len(t.split())) == shortest
    assert full.y_test[list(full.x_test).index(shortest)] == 0
    assert sum("<br />" in t for t in full.x_train) > 10000  # HTML left as it is


def test_test_set_is_file_order_negatives_first(full):
    assert full.y_test[:12500].max() == 0 and full.y_test[12500:].min() == 1


def test_unsupervised_reviews_stay_apart(full, imdb_found, shared_data_dir):
    unsup = load_imdb_unsupervised(shared_data_dir)
    assert unsup.shape == (50000,) and unsup.dtype == object
    assert len(full.x_train) == len(full.x_test) == 25000 and set(full.y_train.tolist()) == {0, 1}
    labeled = set(full.x_train) | set(full.x_test)
    assert len(labeled) == 49582  # the dataset's known number of distinct labelled reviews
    # 620 unsup reviews also occur, word for word, among labelled ones: duplicates in the
    # dataset itself. That no unsup *file* is loaded is shown by the next test, which rebuilds
    # the labelled sets from the four labelled folders alone and finds them identical.
    assert len(labeled & set(unsup)) == 620


def test_parsed_cache_tree_files_and_loaded_arrays_agree(full, imdb_found, tmp_path):
    """Three routes to the texts: in memory after unpacking, reviews-v1.npz, and the files."""
    for group in imdb.LABELED + imdb.UNSUP:
        assert imdb._load_parsed(imdb_found.parsed, group) == list(
            imdb.group_texts(imdb_found, group)
        )
    (tmp_path / "imdb").mkdir()
    (tmp_path / "imdb" / "aclImdb").symlink_to(imdb_found.tree, target_is_directory=True)
    from_files = load(
        "imdb_reviews", data_dir=tmp_path, val_fraction=0, seed=0
    )  # reads 50,000 files
    assert from_files.source == str(tmp_path / "imdb" / "aclImdb")
    assert list(from_files.x_train) == list(full.x_train) and list(from_files.x_test) == list(
        full.x_test
    )
    np.testing.assert_array_equal(from_files.y_train, full.y_train)
    np.testing.assert_array_equal(from_files.y_test, full.y_test)


def test_validation_split(imdb_found, shared_data_dir, full):
    a = load("imdb", data_dir=shared_data_dir, seed=0)
    again = load("imdb-reviews", data_dir=shared_data_dir, seed=0)
    b = load("imdb_reviews", data_dir=shared_data_dir, seed=1)
    assert a.counts() == {"train": 20000, "val": 5000, "test": 25000} and a.val_fraction == 0.2
    assert list(a.x_val) == list(again.x_val)
    assert list(a.x_val) != list(b.x_val)
    tr, va, _ = split_indices(25000, 25000, seed=0, val_fraction=0.2)
    assert set(tr.tolist()).isdisjoint(va.tolist()) and len(tr) + len(va) == 25000
    x_file_order, y_file_order, _, _ = imdb.labeled(imdb_found)
    perm = np.random.default_rng(0).permutation(25000)  # the documented rule, reproducible anywhere
    assert list(a.x_val) == list(x_file_order[np.sort(perm[:5000])])  # file order kept
    assert list(a.x_train) == list(x_file_order[np.sort(perm[5000:])])
    np.testing.assert_array_equal(a.y_val, y_file_order[np.sort(perm[:5000])])
    assert list(a.x_test) == list(full.x_test)  # the test set never moves


def test_subsets_are_deterministic(imdb_found, shared_data_dir):
    a = load("imdb", data_dir=shared_data_dir, train_subset=300, test_subset=100, seed=2)
    b = load("imdb", data_dir=shared_data_dir, train_subset=300, test_subset=100, seed=2)
    assert a.counts() == {"train": 300, "val": 5000, "test": 100}
    assert list(a.x_train) == list(b.x_train) and list(a.x_test) == list(b.x_test)


def test_describe_and_verify(imdb_found, shared_data_dir):
    d = describe("imdb", data_dir=shared_data_dir)
    assert d["counts"] == {"train": 20000, "val": 5000, "test": 25000}
    assert d["unpacked_to"] == str(imdb_found.extracted_to)
    v = verify("imdb", data_dir=shared_data_dir)
    assert v["counts"] == imdb.EXPECTED
    assert v["archive_sha256"] == imdb.REPACK_SHA256 and "repack" in v["archive_is"]
