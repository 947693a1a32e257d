"""Where data comes from: search order, downloads from a local server, safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import tarfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keraslab.data import DataWarning, canonical_name, describe, imdb, load, sources
from keraslab.data import fashion_mnist as fm
from keraslab.data.sources import DownloadError, download, extract_tar_atomically, sha256_verifier
from keraslab.errors import KeraslabError


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Every place empty and offline: each test adds back only the places it is about."""
    places = {
        "data": tmp_path / "data",
        "cache": tmp_path / "cache",
        "home": tmp_path / "home",
        "debian": tmp_path / "debian",
    }
    monkeypatch.setenv("KERASLAB_DATA_DIR", str(places["data"]))
    monkeypatch.setenv("KERASLAB_CACHE_DIR", str(places["cache"]))
    monkeypatch.setenv("HOME", str(places["home"]))
    monkeypatch.setenv("KERASLAB_OFFLINE", "1")
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATASETS_DIR", places["debian"])
    return places


def _link_fashion(src: Path, dst: Path) -> Path:
    """A place holding the real files, as symlinks: free to make, and parsed only once."""
    dst.mkdir(parents=True, exist_ok=True)
    for spec in fm.FILES.values():
        (dst / spec.name).symlink_to(src / spec.name)
    return dst


# --------------------------------------------------------------------------- names


def test_canonical_names():
    for alias in ("fashion_mnist", "fashion-mnist", "Fashion-MNIST "):
        assert canonical_name(alias) == "fashion_mnist"
    for alias in ("imdb", "imdb_reviews", "imdb-reviews"):
        assert canonical_name(alias) == "imdb_reviews"
    with pytest.raises(KeraslabError) as info:
        canonical_name("cifar10")
    assert "fashion_mnist" in info.value.message and "imdb_reviews" in info.value.message


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KERASLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "xdg" / "keraslab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / ".cache" / "keraslab"


# --------------------------------------------------------------------------- search order


def test_fashion_search_order(shared_data_dir, isolated):
    real = shared_data_dir / "fashion-mnist"
    order = [
        _link_fashion(real, isolated["data"] / "fashion-mnist"),
        _link_fashion(real, isolated["cache"] / "fashion-mnist"),
        _link_fashion(real, isolated["home"] / ".keras" / "datasets" / "fashion-mnist"),
        _link_fashion(real, isolated["debian"] / "fashion-mnist"),
    ]
    for folder in order:  # each place wins while present, then the next one takes over
        raw, source, search = fm.find()
        assert source == str(folder)
        assert search.attempts[-1].status == "used"
        shutil.rmtree(folder)
    with pytest.raises(KeraslabError) as info:
        fm.find()
    err = info.value
    for folder in order:
        assert str(folder) in err.message
    assert "download" in err.message and "skipped" in err.message
    assert "KERASLAB_DATA_DIR" in err.hint and "apt install dataset-fashion-mnist" in err.hint
    assert "\n" not in err.one_line()


def test_data_dir_argument_beats_environment(shared_data_dir, isolated, tmp_path):
    _link_fashion(shared_data_dir / "fashion-mnist", isolated["data"] / "fashion-mnist")
    other = _link_fashion(shared_data_dir / "fashion-mnist", tmp_path / "other" / "fashion-mnist")
    assert load("fashion_mnist", data_dir=tmp_path / "other", test_subset=3).source == str(other)
    # The fashion-mnist folder itself is accepted too.
    assert load("fashion_mnist", data_dir=other, test_subset=3).source == str(other)


def test_corrupt_place_is_reported_then_search_goes_on(shared_data_dir, isolated):
    real = shared_data_dir / "fashion-mnist"
    bad = _link_fashion(real, isolated["data"] / "fashion-mnist")
    labels = bad / "train-labels-idx1-ubyte.gz"
    labels.unlink()
    raw = bytearray(__import__("gzip").decompress((real / labels.name).read_bytes()))
    raw[200] = (raw[200] + 1) % 10
    labels.write_bytes(__import__("gzip").compress(bytes(raw)))
    good = _link_fashion(real, isolated["cache"] / "fashion-mnist")

    with pytest.warns(DataWarning, match="checksum mismatch"):
        d = describe("fashion_mnist")
    assert d["source"] == str(good)
    assert [(a["place"], a["status"]) for a in d["looked_at"]] == [
        ("data_dir", "checksum mismatch"),
        ("keraslab cache", "used"),
    ]
    shutil.rmtree(good)
    with pytest.raises(KeraslabError, match="checksum mismatch") as info:
        with pytest.warns(DataWarning):
            load("fashion_mnist")
    assert str(labels) in info.value.message


def test_imdb_search_order(imdb_found, isolated):
    session_tree = imdb_found.tree
    data_tree = isolated["data"] / "imdb" / "aclImdb"
    cache_tree = isolated["cache"] / "imdb" / "aclImdb"
    keras_tree = isolated["home"] / ".keras" / "datasets" / "aclImdb"
    for tree in (data_tree, cache_tree, keras_tree):
        tree.parent.mkdir(parents=True, exist_ok=True)
        tree.symlink_to(session_tree, target_is_directory=True)
    for tree in (data_tree, cache_tree, keras_tree):
        found, search = imdb.find()
        assert found.source == str(tree), search.attempts
        tree.unlink()
    with pytest.raises(KeraslabError) as info:
        imdb.find()
    for place in (isolated["data"] / "imdb", isolated["cache"] / "imdb", keras_tree):
        assert str(place) in info.value.message
    assert "download" in info.value.message and "--data-dir" in info.value.hint


def test_imdb_tree_with_wrong_counts_is_reported(imdb_found, isolated):
    session_tree = imdb_found.tree
    tree = isolated["data"] / "imdb" / "aclImdb"
    for group in imdb.LABELED:
        (tree / group).mkdir(parents=True)
    for name in sorted(p.name for p in (session_tree / "train/pos").iterdir())[:10]:
        (tree / "train/pos" / name).symlink_to(session_tree / "train/pos" / name)
    with pytest.warns(DataWarning, match="train/neg has 0 reviews"):
        with pytest.raises(KeraslabError, match="expected 12,500"):
            imdb.find()


# --------------------------------------------------------------------------- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        path = srv.root / urllib.parse.unquote(self.path.lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if srv.corrupt:
            data = data[:-64] + bytes(64)
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and not srv.ignore_range:
            start, status = int(m.group(1)), 206
            if start >= len(data):
                self.send_error(416)
                return
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root, srv.requests = None, []
    srv.cut_after, srv.corrupt, srv.ignore_range = None, False, False
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}/"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


LABELS = "train-labels-idx1-ubyte.gz"


@pytest.fixture
def labels_served(shared_data_dir, server):
    server.root = shared_data_dir / "fashion-mnist"
    original = (server.root / LABELS).read_bytes()
    return server, server.base + LABELS, original, hashlib.sha256(original).hexdigest()


def test_download_success(labels_served, tmp_path):
    server, url, original, digest = labels_served
    dest = tmp_path / LABELS
    download(url, dest, verify=sha256_verifier(digest))
    assert dest.read_bytes() == original
    assert not dest.with_name(LABELS + ".part").exists()


def test_download_wrong_bytes_are_deleted(labels_served, tmp_path):
    server, url, original, digest = labels_served
    server.corrupt = True
    dest = tmp_path / LABELS
    with pytest.raises(DownloadError) as info:
        download(url, dest, verify=sha256_verifier(digest))
    assert info.value.status == "checksum mismatch"
    assert url in info.value.message and f"expected {digest}" in info.value.message
    assert not dest.exists() and not dest.with_name(LABELS + ".part").exists()


def test_interrupted_download_resumes_and_verifies(labels_served, tmp_path):
    server, url, original, digest = labels_served
    dest = tmp_path / LABELS
    part = dest.with_name(LABELS + ".part")
    server.cut_after = 10_000
    with pytest.raises(DownloadError) as info:
        download(url, dest, verify=sha256_verifier(digest))
    assert info.value.status == "interrupted" and "resume" in info.value.message
    assert not dest.exists() and part.stat().st_size == 10_000

    server.cut_after = None
    download(url, dest, verify=sha256_verifier(digest))
    assert server.requests[-1] == ("/" + LABELS, "bytes=10000-")
    assert dest.read_bytes() == original and not part.exists()


def test_server_ignoring_range_gets_full_download(labels_served, tmp_path):
    server, url, original, digest = labels_served
    server.ignore_range = True
    dest = tmp_path / LABELS
    dest.with_name(LABELS + ".part").write_bytes(b"junk that must not be kept")
    download(url, dest, verify=sha256_verifier(digest))
    assert server.requests[-1][1] is not None  # we asked to resume; the server said no
    assert dest.read_bytes() == original


def test_bad_partial_file_is_caught_then_replaced(labels_served, tmp_path):
    server, url, original, digest = labels_served
    dest = tmp_path / LABELS
    dest.with_name(LABELS + ".part").write_bytes(b"x" * 1000)  # wrong bytes, resumable length
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(url, dest, verify=sha256_verifier(digest))
    download(url, dest, verify=sha256_verifier(digest))  # deleted, so this one starts clean
    assert dest.read_bytes() == original


def test_network_errors_are_clear(labels_served, tmp_path):
    server, url, original, digest = labels_served
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.base + "nope.gz", tmp_path / "nope.gz", verify=sha256_verifier(digest))
    assert info.value.status == "network error"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="download of http://127.0.0.1"):
        download(
            f"http://127.0.0.1:{port}/x", tmp_path / "x", verify=sha256_verifier(digest), timeout=5
        )


def test_fashion_download_end_to_end(shared_data_dir, isolated, server, monkeypatch):
    server.root = shared_data_dir
    monkeypatch.setenv("KERASLAB_OFFLINE", "0")
    # The first mirror lacks the files: the second must be tried.
    monkeypatch.setenv(fm.URL_ENV, f"{server.base}missing/ {server.base}fashion-mnist/")
    d = describe("fashion_mnist")
    assert d["source"] == f"{server.base}fashion-mnist/"
    assert d["counts"] == {"train": 54000, "val": 6000, "test": 10000}
    statuses = [(a["place"], a["status"]) for a in d["looked_at"]]
    assert ("download", "network error") in statuses and statuses[-1] == ("download", "used")
    cached = isolated["cache"] / "fashion-mnist"
    for spec in fm.FILES.values():
        assert (cached / spec.name).read_bytes() == (
            shared_data_dir / "fashion-mnist" / spec.name
        ).read_bytes()
    server.shutdown()  # from now on the cache serves, offline
    monkeypatch.setenv("KERASLAB_OFFLINE", "1")
    assert load("fashion_mnist", test_subset=3).source == str(cached)


def test_imdb_download_must_match_stanford_checksum(shared_data_dir, isolated, server, monkeypatch):
    server.root = shared_data_dir / "imdb"  # the repack: right content, other bytes than Stanford's
    monkeypatch.setenv("KERASLAB_OFFLINE", "0")
    monkeypatch.setenv(imdb.URL_ENV, server.base + imdb.ARCHIVE)
    with pytest.raises(KeraslabError) as info:
        imdb.find()
    msg = info.value.message
    assert "checksum mismatch" in msg and imdb.STANFORD_SHA256 in msg and imdb.REPACK_SHA256 in msg
    folder = isolated["cache"] / "imdb"
    assert not (folder / imdb.ARCHIVE).exists() and not (folder / (imdb.ARCHIVE + ".part")).exists()


# --------------------------------------------------------------------------- extraction


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """Write a tar.gz of (kind, name, payload): kind "file", "dir", "symlink" (payload = target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
    return path


def _nothing_left(tmp_path: Path, out: Path):
    assert not out.exists()
    assert not list(out.parent.glob(".partial-*"))
    assert not [p for p in tmp_path.rglob("evil*")]


@pytest.mark.parametrize(
    "members, why",
    [
        ([("file", "aclImdb/ok.txt", b"ok"), ("file", "../evil.txt", b"x")], "climbs out"),
        ([("file", "aclImdb/../../evil.txt", b"x")], "climbs out"),
        ([("file", "ABSOLUTE", b"x")], "absolute path"),
        (
            [("symlink", "aclImdb/up", "../../.."), ("file", "aclImdb/up/evil.txt", b"x")],
            "pointing outside",
        ),
        ([("symlink", "aclImdb/etc", "/etc")], "pointing outside"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, members, why):
    members = [
        (k, str(tmp_path / "evil-abs.txt") if n == "ABSOLUTE" else n, p) for k, n, p in members
    ]
    archive = _tar(tmp_path / "in" / "crafted.tar.gz", members)
    out = tmp_path / "cache" / "imdb" / "extracted"
    with pytest.raises(KeraslabError, match=why) as info:
        extract_tar_atomically(archive, out)
    assert "refusing to extract" in info.value.message
    _nothing_left(tmp_path, out)


def test_tarfile_data_filter_is_a_second_line(tmp_path, monkeypatch):
    """Even with our own checks switched off, tarfile's "data" filter refuses escapes."""
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    monkeypatch.setattr(sources, "_check_member", lambda *a: None)
    for members in (
        [("file", "../evil.txt", b"x")],
        [("symlink", "aclImdb/up", "../../.."), ("file", "aclImdb/up/evil.txt", b"x")],
    ):
        archive = _tar(tmp_path / "in" / "crafted.tar.gz", members)
        out = tmp_path / "cache" / "out"
        with pytest.raises(KeraslabError, match="refused by tarfile"):
            extract_tar_atomically(archive, out)
        _nothing_left(tmp_path, out)


def test_safe_archive_extracts_atomically_and_cleans_stale_partials(tmp_path):
    archive = _tar(
        tmp_path / "in" / "good.tar.gz",
        [
            ("dir", "aclImdb", b""),
            ("file", "aclImdb/a.txt", b"alpha"),
            ("file", "aclImdb/b/c.txt", b"gamma"),
        ],
    )
    out = tmp_path / "cache" / "extracted-x"
    stale = out.parent / ".partial-999999999-dead"  # left by a process that no longer exists
    stale.mkdir(parents=True)
    seen = {}
    assert extract_tar_atomically(archive, out, on_file=lambda n, b: seen.setdefault(n, b))
    assert (out / "aclImdb" / "b" / "c.txt").read_bytes() == b"gamma"
    assert seen == {"aclImdb/a.txt": b"alpha", "aclImdb/b/c.txt": b"gamma"}
    assert not stale.exists()


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path):
    payload = bytes(range(256)) * 400
    archive = _tar(
        tmp_path / "in" / "big.tar.gz", [("file", f"aclImdb/{i}.txt", payload) for i in range(5)]
    )
    cut = tmp_path / "in" / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    out = tmp_path / "cache" / "extracted-cut"
    with pytest.raises(KeraslabError, match="damaged"):
        extract_tar_atomically(cut, out)
    _nothing_left(tmp_path, out)

    def fail(tmp):  # a check after unpacking (e.g. counts) that fails: no final folder either
        raise KeraslabError("counts are wrong")

    with pytest.raises(KeraslabError, match="counts are wrong"):
        extract_tar_atomically(archive, out, finish=fail)
    _nothing_left(tmp_path, out)
