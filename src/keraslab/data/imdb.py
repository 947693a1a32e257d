"""IMDB movie reviews (aclImdb v1): raw review text, labelled by the folder it sits in.

The archive holds 100,000 small files, and unpacking it is the slow part (tens of seconds), so
it happens once per archive: into keraslab's cache (never beside the archive, whose folder may
be read-only), atomically, in a folder named after the archive's sha256. During that one pass
the texts are also collected and written next to the tree as `reviews-v1.npz` (one UTF-8 blob
plus offsets per folder), so a later process loads 100,000 reviews in well under a second
instead of opening every file again.

A local archive is trusted by its counts (12,500 reviews in each labelled folder), because the
copy in shared/data is a faithful repack whose bytes differ from Stanford's; a *download* must
match Stanford's sha256 exactly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keraslab.errors import KeraslabError

from . import sources
from .sources import DataError, DownloadError, Search

NAME = "imdb_reviews"
CLASS_NAMES = ("negative", "positive")
FOLDER = "imdb"
ARCHIVE = "aclImdb_v1.tar.gz"
TREE = "aclImdb"
PARSED = "reviews-v1.npz"
URL_ENV = "KERASLAB_IMDB_URL"
DEFAULT_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
STANFORD_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
# The faithful repack in shared/data (see its MANIFEST.md): known, but only ever checked by counts.
REPACK_SHA256 = "91ab3079f70de8a9697b762bba75c97e4c82d1f1b49e151618e666091fb6a7fc"

EXPECTED = {
    "train/neg": 12500,
    "train/pos": 12500,
    "test/neg": 12500,
    "test/pos": 12500,
    "train/unsup": 50000,
}
LABELED = ("train/neg", "train/pos", "test/neg", "test/pos")
UNSUP = ("train/unsup",)
RATINGS = {"neg": range(1, 5), "pos": range(7, 11), "unsup": range(0, 1)}
_MEMBER = re.compile(r"^aclImdb/((?:train|test)/(?:pos|neg|unsup))/([^/]+\.txt)$")
_REVIEW_FILE = re.compile(r"^(\d+)_(\d+)\.txt$")

_HINT = (
    "put aclImdb_v1.tar.gz (or an unpacked aclImdb/) in DIR/imdb/ and pass --data-dir DIR "
    f"(or set {sources.DATA_DIR_ENV}=DIR), or go online (unset {sources.OFFLINE_ENV}) so "
    "keraslab downloads it into its cache"
)


@dataclass(frozen=True)
class Found:
    """An aclImdb tree ready to read, and where it came from (for reports)."""

    tree: Path
    source: str
    parsed: Path | None = None  # our reviews-v1.npz, when we unpacked the tree ourselves
    extracted_to: Path | None = None


# --------------------------------------------------------------------------- reading


def _review_names(folder: Path) -> list[str]:
    """Sorted, so every machine sees the same order before any seeded shuffle."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.name.endswith(".txt") and e.is_file())


def _read_texts(folder: Path, names: list[str]) -> list[str]:
    texts = []
    for name in names:
        path = folder / name
        try:
            with open(path, encoding="utf-8") as fh:
                texts.append(fh.read())
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not valid UTF-8 ({exc.reason})") from None
    return texts


def _tree_problem(tree: Path, groups: tuple[str, ...]) -> tuple[str, str] | None:
    """(status, why) when `tree` cannot serve `groups`; None when every folder has its count."""
    if not tree.is_dir():
        return "missing", "no such folder"
    for group in groups:
        if not (tree / group).is_dir():
            return "incomplete", f"no {group}/ folder"
    for group in groups:
        n = len(_review_names(tree / group))
        if n != EXPECTED[group]:
            return "corrupt", f"{group} has {n:,} reviews, expected {EXPECTED[group]:,}"
    return None


def _save_parsed(path: Path, groups: dict[str, list[str]]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for group, texts in groups.items():
        encoded = [t.encode("utf-8") for t in texts]
        key = group.replace("/", "_")
        arrays[f"{key}_text"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        arrays[f"{key}_ends"] = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_parsed(path: Path, group: str) -> list[str] | None:
    """Texts of one folder from our parsed cache, or None if it is absent or does not add up."""
    key = group.replace("/", "_")
    try:
        with np.load(path) as z:
            if f"{key}_text" not in z.files:
                return None
            blob = z[f"{key}_text"].tobytes()
            ends = z[f"{key}_ends"]
    except (OSError, ValueError, EOFError):
        return None
    if len(ends) != EXPECTED[group] or (len(ends) and int(ends[-1]) != len(blob)):
        return None
    starts = np.concatenate([[0], ends[:-1]]).tolist()
    try:
        return [blob[s:e].decode("utf-8") for s, e in zip(starts, ends.tolist(), strict=True)]
    except UnicodeDecodeError:
        return None


_texts: dict[tuple, np.ndarray] = {}  # (tree, group, signature) -> read-only object array


def group_texts(found: Found, group: str) -> np.ndarray:
    """Texts of one folder as a read-only object array, parsed once per process."""
    folder = found.tree / group
    if found.parsed is not None:
        signature: tuple = ("extracted",)  # our own tree never changes after its rename
    else:
        st = folder.stat()
        signature = (st.st_mtime_ns, st.st_ino)
    key = (str(found.tree), group, signature)
    if key not in _texts:
        texts = _load_parsed(found.parsed, group) if found.parsed is not None else None
        if texts is None:
            texts = _read_texts(folder, _review_names(folder))
        _remember(key, texts)
    return _texts[key]


def _remember(key: tuple, texts: list[str]) -> None:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = texts
    arr.setflags(write=False)
    _texts[key] = arr


def labeled(found: Found) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test in file order: negatives (0) first, then positives (1)."""
    out = []
    for split in ("train", "test"):
        neg, pos = group_texts(found, f"{split}/neg"), group_texts(found, f"{split}/pos")
        x = np.concatenate([neg, pos])
        y = np.concatenate([np.zeros(len(neg), np.int64), np.ones(len(pos), np.int64)])
        out += [x, y]
    return tuple(out)  # type: ignore[return-value]


# --------------------------------------------------------------------------- unpacking


class _Collector:
    """Keeps review texts as they stream out of the archive, then checks and saves them."""

    def __init__(self, archive: Path):
        self.archive = archive
        self.groups: dict[str, dict[str, str]] = {g: {} for g in EXPECTED}

    def add(self, name: str, data: bytes) -> None:
        m = _MEMBER.match(name)
        if not m:
            return
        try:
            self.groups[m.group(1)][m.group(2)] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.archive}: member {name} is not valid UTF-8 ({exc.reason})"
            ) from None

    def sorted_groups(self) -> dict[str, list[str]]:
        return {g: [texts[n] for n in sorted(texts)] for g, texts in self.groups.items() if texts}

    def finish(self, tmp: Path) -> None:
        for group in LABELED:
            n = len(self.groups[group])
            if n != EXPECTED[group]:
                raise DataError(
                    f"{self.archive} is incomplete: aclImdb/{group} has {n:,} reviews, "
                    f"expected {EXPECTED[group]:,}",
                    "replace the archive with a complete copy",
                )
        n_unsup = len(self.groups["train/unsup"])
        if n_unsup not in (0, EXPECTED["train/unsup"]):
            raise DataError(
                f"{self.archive} is incomplete: aclImdb/train/unsup has {n_unsup:,} reviews, "
                f"expected {EXPECTED['train/unsup']:,}",
                "replace the archive with a complete copy",
            )
        _save_parsed(tmp / PARSED, self.sorted_groups())


_bad_archives: dict[Path, DataError] = {}  # keyed by content (extraction_dir), per process


def extraction_dir(archive: Path) -> Path:
    """Where `archive` is (or will be) unpacked: named by content, so any copy of it reuses it."""
    return sources.cache_dir() / FOLDER / f"extracted-{sources.sha256_file_cached(archive)[:16]}"


def from_archive(archive: Path) -> tuple[Found, bool]:
    """The unpacked tree for `archive`, unpacking it now if needed; True when unpacked now."""
    out = extraction_dir(archive)
    fresh = False
    if not (out / TREE).is_dir():
        if out in _bad_archives:  # same bytes, same verdict: don't spend half a minute again
            raise _bad_archives[out]
        collector = _Collector(archive)
        try:
            sources.extract_tar_atomically(
                archive, out, on_file=collector.add, finish=collector.finish
            )
        except DataError as exc:  # not disk-full and the like: those can pass
            _bad_archives[out] = exc
            raise
        fresh = True
        if (out / TREE).is_dir():
            # Seed the in-process cache with what we just read: no second pass over 400 MB.
            for group, texts in collector.sorted_groups().items():
                _remember((str(out / TREE), group, ("extracted",)), texts)
    parsed = out / PARSED
    return Found(out / TREE, str(archive), parsed if parsed.is_file() else None, out), fresh


# --------------------------------------------------------------------------- search


def _extracted_serves(found: Found, groups: tuple[str, ...]) -> str | None:
    """Why our own unpacked tree cannot serve `groups` (it is complete by construction)."""
    for group in groups:
        if not (found.tree / group).is_dir():
            return f"no {group}/ folder"
    return None


def _try_tree(search: Search, place: str, tree: Path, groups: tuple[str, ...]) -> Found | None:
    problem = _tree_problem(tree, groups)
    if problem is None:
        search.record(place, tree, "used")
        return Found(tree, str(tree))
    status, why = problem
    if status == "corrupt":
        search.damaged(place, tree, status, why)
    else:
        search.record(place, tree, status, why)
    return None


def _try_archive(
    search: Search, place: str, archive: Path, groups: tuple[str, ...]
) -> Found | None:
    if not archive.is_file():
        search.record(place, archive, "missing")
        return None
    try:
        found, fresh = from_archive(archive)
    except DataError as exc:
        search.damaged(place, archive, exc.status, exc.message)
        return None
    except KeraslabError as exc:  # e.g. a full disk: report the place, keep looking
        search.record(place, archive, "could not unpack", exc.message)
        return None
    why = _extracted_serves(found, groups)
    if why is not None:
        search.record(place, archive, "incomplete", why)
        return None
    search.record(
        place,
        archive,
        "used",
        f"{'unpacked now' if fresh else 'unpacked earlier'} to {found.extracted_to}",
    )
    return found


def _try_folder(search: Search, place: str, folder: Path, groups: tuple[str, ...]) -> Found | None:
    """An imdb/ folder may hold an unpacked aclImdb/, the archive, or both; the tree goes first."""
    if not folder.is_dir():
        search.record(place, folder, "missing", "no such folder")
        return None
    found = None
    if (folder / TREE).is_dir():
        found = _try_tree(search, place, folder / TREE, groups)
    if found is None and (folder / ARCHIVE).is_file():
        found = _try_archive(search, place, folder / ARCHIVE, groups)
    if found is None and not (folder / TREE).is_dir() and not (folder / ARCHIVE).is_file():
        search.record(place, folder, "missing", f"neither {TREE}/ nor {ARCHIVE}")
    return found


def _earlier_extractions(search: Search, groups: tuple[str, ...]) -> Found | None:
    """Trees keraslab unpacked before, from archives that may no longer be where they were."""
    folder = sources.cache_dir() / FOLDER
    candidates = sorted(folder.glob("extracted-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for out in candidates:
        found = Found(
            out / TREE, str(out / TREE), out / PARSED if (out / PARSED).is_file() else None, out
        )
        if (out / TREE).is_dir() and _extracted_serves(found, groups) is None:
            search.record("keraslab cache", out / TREE, "used", "unpacked earlier")
            return found
    return None


def find(
    data_dir=None, *, offline: bool | None = None, unsup: bool = False
) -> tuple[Found, Search]:
    """The first place in search order that can serve the labelled (or unlabelled) reviews."""
    groups = UNSUP if unsup else LABELED
    search = Search(NAME)
    root, how = sources.resolve_data_dir(data_dir)
    if root is None:
        search.record("data_dir", "-", "not set", how)
    else:
        folder = root / FOLDER
        if not folder.is_dir() and ((root / TREE).is_dir() or (root / ARCHIVE).is_file()):
            folder = root  # the imdb/ folder itself was given
        found = _try_folder(search, "data_dir", folder, groups)
        if found is not None:
            return found, search

    cache = sources.cache_dir() / FOLDER
    found = _try_folder(search, "keraslab cache", cache, groups)
    if found is None and cache.is_dir():
        found = _earlier_extractions(search, groups)
    if found is not None:
        return found, search

    keras_tree = sources.keras_datasets_dir() / TREE
    if keras_tree.is_dir():
        found = _try_tree(search, "keras cache", keras_tree, groups)
        if found is not None:
            return found, search
    else:
        search.record("keras cache", keras_tree, "missing")

    found = _download(search, offline, groups)
    if found is not None:
        return found, search
    raise search.failure(_HINT)


def _download(search: Search, offline: bool | None, groups: tuple[str, ...]) -> Found | None:
    urls = sources.urls_from_env(URL_ENV, [DEFAULT_URL])
    if sources.is_offline(offline):
        search.record(
            "download",
            " ".join(urls),
            "skipped",
            f"offline mode: {sources.OFFLINE_ENV}=1 or offline=True",
        )
        return None
    dest = sources.cache_dir() / FOLDER / ARCHIVE
    for url in urls:
        try:
            sources.download(url, dest, verify=sources.sha256_verifier(STANFORD_SHA256))
        except DownloadError as exc:
            search.record("download", url, exc.status, exc.message)
            continue
        try:
            found, _ = from_archive(dest)
        except KeraslabError as exc:
            search.damaged("download", url, "corrupt", exc.message)
            return None
        if _extracted_serves(found, groups) is not None:
            search.record("download", url, "incomplete", "the archive lacks train/unsup")
            return None
        search.record("download", url, "used", f"saved as {dest}, unpacked to {found.extracted_to}")
        return Found(found.tree, url, found.parsed, found.extracted_to)
    return None


# --------------------------------------------------------------------------- verify


def verify(data_dir=None, *, offline: bool | None = None) -> dict:
    """Re-read every review file of the tree load() would use and check names, counts, text."""
    found, search = find(data_dir, offline=offline)
    checked: dict[str, int] = {}
    notes: list[str] = []
    for group in EXPECTED:
        folder = found.tree / group
        if group in UNSUP and not folder.is_dir():
            notes.append("train/unsup is absent: load() works, load_imdb_unsupervised() will not")
            continue
        names = _review_names(folder)
        if len(names) != EXPECTED[group]:
            raise DataError(f"{folder} has {len(names):,} reviews, expected {EXPECTED[group]:,}")
        ids = set()
        allowed = RATINGS[group.split("/")[1]]
        for name in names:
            m = _REVIEW_FILE.match(name)
            if not m or int(m.group(2)) not in allowed:
                raise DataError(
                    f"{folder / name}: name is not <id>_<rating>.txt with a rating in {allowed}"
                )
            ids.add(int(m.group(1)))
        if ids != set(range(len(names))):
            raise DataError(f"{folder}: review ids are not 0..{len(names) - 1} without gaps")
        for name, text in zip(names, _read_texts(folder, names), strict=True):
            if not text.strip():
                raise DataError(f"{folder / name} is empty")
        checked[group] = len(names)
    result = {
        "name": NAME,
        "source": found.source,
        "tree": str(found.tree),
        "counts": checked,
        "notes": notes,
        "looked_at": [a.to_dict() for a in search.attempts],
    }
    source = Path(found.source)
    if source.name == ARCHIVE and source.is_file():
        digest = sources.sha256_file_cached(source)
        result["archive_sha256"] = digest
        result["archive_is"] = {
            STANFORD_SHA256: "Stanford's original",
            REPACK_SHA256: "the faithful repack (see shared/data/imdb/MANIFEST.md)",
        }.get(digest, "unknown bytes, accepted on counts")
    return result
