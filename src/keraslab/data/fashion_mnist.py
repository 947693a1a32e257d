"""Fashion-MNIST from the four original gzip IDX files, read by a small reader of our own.

Our own reader (rather than keras.datasets) because it must take the files from any of several
places, and must prove they are the real, whole dataset: every structural fact of the header is
checked, then the sha256 of the *decompressed* bytes. Hashing decompressed content is what lets
Debian's package (same IDX bytes, recompressed) pass while a damaged or different file does not.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from keraslab.errors import KeraslabError

from . import sources
from .sources import DataError, DownloadError, Search

NAME = "fashion_mnist"
FOLDER = "fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
URL_ENV = "KERASLAB_FASHION_MNIST_URL"
DEFAULT_URLS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
ROWS = COLS = 28


@dataclass(frozen=True)
class IdxFile:
    name: str
    magic: int
    count: int
    sha256: str  # of the decompressed IDX bytes (shared/data/fashion-mnist/MANIFEST.md)


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte.gz",
        IMAGE_MAGIC,
        60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte.gz",
        LABEL_MAGIC,
        60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte.gz",
        IMAGE_MAGIC,
        10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        LABEL_MAGIC,
        10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

_HINT_BAD = "replace the file with a good copy, or delete it so keraslab looks elsewhere"


def read_idx(
    path: Path, *, magic: int, count: int | None = None, sha256: str | None = None
) -> np.ndarray:
    """Parse one gzip IDX file into a read-only uint8 array: (n, 28, 28) images or (n,) labels.

    Structure is checked before the checksum so a damaged file gets a specific message
    (truncated, wrong magic, wrong count) rather than only "digest differs".
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc})", _HINT_BAD) from None
    if len(raw) < 8:
        raise DataError(
            f"{path} is truncated: {len(raw)} bytes, shorter than an IDX header", _HINT_BAD
        )
    got_magic, n = struct.unpack(">II", raw[:8])
    if got_magic != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        raise DataError(
            f"{path} has IDX magic number {got_magic}, expected {magic} ({kind}); "
            "it is not a Fashion-MNIST file of this kind",
            _HINT_BAD,
        )
    if magic == IMAGE_MAGIC:
        if len(raw) < 16:
            raise DataError(f"{path} is truncated inside its header", _HINT_BAD)
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (ROWS, COLS):
            raise DataError(f"{path} holds {rows}x{cols} images, expected {ROWS}x{COLS}", _HINT_BAD)
        header, shape = 16, (n, ROWS, COLS)
    else:
        header, shape = 8, (n,)
    want = header + int(np.prod(shape))
    if len(raw) != want:
        how = "truncated" if len(raw) < want else "longer than its header says"
        raise DataError(
            f"{path} is {how}: its header announces {n:,} items ({want:,} bytes) "
            f"but it holds {len(raw):,} bytes",
            _HINT_BAD,
        )
    if count is not None and n != count:
        raise DataError(f"{path} holds {n:,} items, expected {count:,}", _HINT_BAD)
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise DataError(
                f"{path}: sha256 of the decompressed content is {actual}, expected {sha256}",
                _HINT_BAD,
                status="checksum mismatch",
            )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)  # read-only view


def read_file(path: Path, spec: IdxFile) -> np.ndarray:
    return read_idx(path, magic=spec.magic, count=spec.count, sha256=spec.sha256)


@dataclass(frozen=True)
class Raw:
    """The four arrays as stored (uint8, read-only), shared by every load() in the process."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folder: Path


def read_folder(folder: Path) -> Raw:
    """Read and check a folder with the four files, parsing each distinct set of files once.

    The cache key is the files' real paths, sizes and mtimes, so a replaced file is re-read,
    and folders of symlinks to the same files (or the same folder reached two ways) share it.
    """
    folder = Path(folder)
    key = []
    for spec in FILES.values():
        real = (folder / spec.name).resolve()
        st = real.stat()
        key.append((str(real), st.st_size, st.st_mtime_ns))
    key = tuple(key)
    if (
        key in _failures
    ):  # the same damaged bytes fail the same way; don't re-read 26 MB to learn it
        raise _failures[key]
    try:
        arrays = _read_files_cached(key)
    except KeraslabError as exc:
        _failures[key] = exc
        raise
    return Raw(*arrays, folder=folder)


_failures: dict[tuple, KeraslabError] = {}


@lru_cache(maxsize=4)
def _read_files_cached(key: tuple) -> tuple[np.ndarray, ...]:
    paths = {name: Path(entry[0]) for name, entry in zip(FILES, key, strict=True)}
    arrays = {name: read_file(paths[name], FILES[name]) for name in FILES}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(x) != len(y):
            raise DataError(f"{paths[f'{split}_images']}: {len(x):,} images but {len(y):,} labels")
        if y.size and int(y.max()) >= len(CLASS_NAMES):
            raise DataError(
                f"{paths[f'{split}_labels']}: labels go up to {int(y.max())}, expected 0..9"
            )
    return (
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
    )


def candidate_folders(data_dir) -> list[tuple[str, Path | None, str]]:
    """(place, folder, note) in search order; folder None means the place was not set."""
    root, how = sources.resolve_data_dir(data_dir)
    places: list[tuple[str, Path | None, str]] = []
    if root is None:
        places.append(("data_dir", None, how))
    else:
        # Accept the fashion-mnist folder itself too: an easy mistake with an obvious meaning.
        direct = all((root / f.name).is_file() for f in FILES.values())
        places.append(("data_dir", root if direct else root / FOLDER, how))
    places.append(("keraslab cache", sources.cache_dir() / FOLDER, ""))
    places.append(("keras cache", sources.keras_datasets_dir() / FOLDER, ""))
    places.append(("debian", sources.SYSTEM_DATASETS_DIR / FOLDER, ""))
    return places


def find(data_dir=None, *, offline: bool | None = None) -> tuple[Raw, str, Search]:
    """The first place in search order that holds four good files, else download them."""
    search = Search(NAME)
    for place, folder, note in candidate_folders(data_dir):
        if folder is None:
            search.record(place, "-", "not set", note)
            continue
        raw = _try_folder(search, place, folder)
        if raw is not None:
            return raw, str(raw.folder), search
    raw, source = _download(search, offline)
    if raw is not None:
        return raw, source, search
    raise search.failure(
        "put the four Fashion-MNIST .gz files in DIR/fashion-mnist/ and pass --data-dir DIR "
        f"(or set {sources.DATA_DIR_ENV}=DIR), or `apt install dataset-fashion-mnist`, or go "
        f"online (unset {sources.OFFLINE_ENV}) so keraslab downloads them into its cache"
    )


def _try_folder(search: Search, place: str, folder: Path) -> Raw | None:
    if not folder.is_dir():
        search.record(place, folder, "missing", "no such folder")
        return None
    absent = [f.name for f in FILES.values() if not (folder / f.name).is_file()]
    if absent:
        search.record(place, folder, "missing", "lacks " + ", ".join(absent))
        return None
    try:
        raw = read_folder(folder)
    except DataError as exc:
        search.damaged(place, folder, exc.status, exc.message)
        return None
    search.record(place, folder, "used")
    return raw


def _download(search: Search, offline: bool | None) -> tuple[Raw | None, str]:
    urls = sources.urls_from_env(URL_ENV, DEFAULT_URLS)
    if sources.is_offline(offline):
        search.record(
            "download",
            " ".join(urls),
            "skipped",
            f"offline mode: {sources.OFFLINE_ENV}=1 or offline=True",
        )
        return None, ""
    target = sources.cache_dir() / FOLDER
    used: list[str] = []
    for spec in FILES.values():
        dest = target / spec.name
        if dest.is_file():
            try:
                read_file(
                    dest, spec
                )  # a good copy already cached (e.g. from an earlier partial run)
                continue
            except KeraslabError:
                pass  # damaged: the download below replaces it
        for base in urls:
            url = base.rstrip("/") + "/" + spec.name
            try:
                sources.download(url, dest, verify=lambda p, spec=spec: read_file(p, spec))
            except DownloadError as exc:
                search.record("download", url, exc.status, exc.message)
                continue
            if base not in used:
                used.append(base)
            break
        else:
            return None, ""
    raw = read_folder(target)
    search.record("download", " ".join(used) or target, "used", f"saved in {target}")
    return raw, " ".join(used) if used else str(target)


def verify(data_dir=None, *, offline: bool | None = None) -> dict:
    """Re-read the files that load() would use, bypassing the in-process cache, and check all."""
    raw, source, search = find(data_dir, offline=offline)
    files = []
    for spec in FILES.values():
        path = raw.folder / spec.name
        arr = read_file(path, spec)  # fresh read: structure, counts and decompressed sha256
        files.append(
            {
                "file": str(path),
                "magic": spec.magic,
                "count": int(arr.shape[0]),
                "sha256_decompressed": spec.sha256,
                "ok": True,
            }
        )
    class_counts = {}
    for split, labels, per_class in (("train", raw.y_train, 6000), ("test", raw.y_test, 1000)):
        counts = np.bincount(labels, minlength=len(CLASS_NAMES))
        if not np.all(counts == per_class):
            raise DataError(
                f"{raw.folder}: {split} class counts {counts.tolist()}, expected {per_class} each"
            )
        class_counts[split] = dict(zip(CLASS_NAMES, counts.tolist(), strict=True))
    return {
        "name": NAME,
        "source": source,
        "folder": str(raw.folder),
        "files": files,
        "class_counts": class_counts,
        "looked_at": [a.to_dict() for a in search.attempts],
    }
