"""Where dataset files come from: the places searched, keraslab's cache, downloads, safe extraction.

Every loader walks the same ordered places and writes down what it saw at each one (an
`Attempt`), so that when nothing serves, the error can name every place and why it failed
instead of only the last one tried:

1. the `data_dir` argument, else env KERASLAB_DATA_DIR (laid out like the shared data folder);
2. keraslab's cache: env KERASLAB_CACHE_DIR, else $XDG_CACHE_HOME/keraslab, else ~/.cache/keraslab;
3. Keras' own cache (~/.keras/datasets, or $KERAS_HOME/datasets);
4. Debian's /usr/share/datasets (only where a package ships the dataset);
5. a download into keraslab's cache, unless offline (env KERASLAB_OFFLINE=1 or offline=True).

Corrupt places: a place holding a damaged file is *reported*, never silently skipped: it raises
a `DataWarning` at once, it is listed in describe()'s `looked_at`, and it is named in the error
if no place serves. The search still goes on, because a good copy further down (or a fresh
download that replaces a damaged cached file) is what the user wants.

Everything written goes into keraslab's cache and appears there atomically (a `.part` file or a
`.partial-*` folder renamed when complete), because readers trust whatever has its final name.
The cache has a data_dir's shape, so it can serve as one:

    fashion-mnist/*.gz                        downloads (checked like any other copy)
    imdb/aclImdb_v1.tar.gz                    a download, checked against Stanford's sha256
    imdb/extracted-<sha256[:16]>/aclImdb/     an archive from any place, unpacked, named by content
    imdb/extracted-<sha256[:16]>/reviews-v1.npz   the same texts parsed, for sub-second loads
    *.part, *.lock, imdb/.partial-*           work in progress; never read as data
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from keraslab import __version__
from keraslab.errors import KeraslabError

DATA_DIR_ENV = "KERASLAB_DATA_DIR"
CACHE_DIR_ENV = "KERASLAB_CACHE_DIR"
OFFLINE_ENV = "KERASLAB_OFFLINE"

# Module attributes rather than constants inlined at use, so tests can point them elsewhere.
SYSTEM_DATASETS_DIR = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

_TRUE = {"1", "true", "yes", "on"}


class DataWarning(UserWarning):
    """A place held damaged data and was passed over; shown so corruption never goes unnoticed."""


class DataError(KeraslabError):
    """Bad data at a known place; `status` is the short word the search report shows for it."""

    def __init__(self, message: str, hint: str | None = None, *, status: str = "corrupt"):
        super().__init__(message, hint)
        self.status = status


class DownloadError(DataError):
    """A failed download: "network error", "interrupted" (.part kept) or "checksum mismatch"."""

    def __init__(self, message: str, hint: str | None = None, *, status: str = "network error"):
        super().__init__(message, hint, status=status)


# --------------------------------------------------------------------------- places


def cache_dir() -> Path:
    """keraslab's cache, read from the environment on every call so tests can redirect it."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "keraslab"
    return Path("~/.cache/keraslab").expanduser()


def keras_datasets_dir() -> Path:
    """Keras' download cache, honouring KERAS_HOME as Keras itself does."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home).expanduser() if home else Path("~/.keras").expanduser()
    return base / "datasets"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The user's data folder and how it was given (for messages), or (None, why not)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "data_dir argument"
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser(), DATA_DIR_ENV
    return None, f"no data_dir given and {DATA_DIR_ENV} unset"


def is_offline(offline: bool | None = None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def urls_from_env(env: str, defaults: list[str]) -> list[str]:
    """A whitespace- or comma-separated list from `env`: tests and mirrors replace the defaults."""
    value = os.environ.get(env, "").strip()
    if not value:
        return list(defaults)
    return [u for u in re.split(r"[\s,]+", value) if u]


@dataclass
class Attempt:
    """One place looked at, and what was found there."""

    place: str  # "data_dir", "keraslab cache", "keras cache", "debian", "download"
    location: str  # a path or URL
    status: str  # "used", "missing", "not set", "corrupt", "checksum mismatch", ...
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        text = f"{self.place} {self.location}: {self.status}"
        return f"{text} ({self.detail})" if self.detail else text


class Search:
    """The record of one search, so the final error (or describe()) can list every place."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.attempts: list[Attempt] = []

    def record(self, place: str, location: Path | str, status: str, detail: str = "") -> None:
        self.attempts.append(Attempt(place, str(location), status, detail))

    def damaged(self, place: str, location: Path | str, status: str, detail: str) -> None:
        """Record a damaged place and say so now: a corrupt file must never pass unnoticed."""
        self.record(place, location, status, detail)
        warnings.warn(
            f"{self.dataset}: {place} {location} is {status}: {detail}; looking further",
            DataWarning,
            stacklevel=4,
        )

    def failure(self, hint: str) -> KeraslabError:
        looked = "; ".join(a.line() for a in self.attempts)
        return KeraslabError(f"{self.dataset} not found anywhere. Looked at: {looked}", hint)


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def sha256_file_cached(path: Path) -> str:
    """sha256 remembered per (path, size, mtime) so repeated loads in a process hash once."""
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def sha256_verifier(expected: str) -> Callable[[Path], None]:
    def verify(path: Path) -> None:
        actual = sha256_file(path)
        if actual != expected:
            raise KeraslabError(f"sha256 mismatch: expected {expected}, got {actual}")

    return verify


# --------------------------------------------------------------------------- download


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise two processes downloading the same file, which would interleave one .part."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def download(
    url: str,
    dest: Path,
    *,
    verify: Callable[[Path], None],
    timeout: float | None = None,
) -> None:
    """Fetch `url` to `dest` via `dest.part`, resuming a kept .part, verifying before the rename.

    Only `verify` decides whether bytes are good (a checksum, or a full parse): a wrong file is
    deleted so the next try starts clean, while an interrupted one is kept so the next try
    resumes with an HTTP Range request instead of starting over.
    """
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with _locked(dest.with_name(dest.name + ".lock")):
        _fetch(url, part, timeout)
        try:
            verify(part)
        except KeraslabError as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"download of {url} is not the expected file ({exc.message}); "
                f"the downloaded copy was deleted",
                "the server or a proxy served other bytes; try again later or supply the file "
                "yourself",
                status="checksum mismatch",
            ) from None
        os.replace(part, dest)


def _fetch(url: str, part: Path, timeout: float, *, allow_resume: bool = True) -> None:
    have = part.stat().st_size if allow_resume and part.exists() else 0
    headers = {"User-Agent": f"keraslab/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Nothing left to send: the kept .part may already be whole; verify() decides.
            return
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"download of {url} failed: {reason}") from None

    with response:
        if have and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                # The server resumed somewhere else: appending would scramble the file.
                response.close()
                return _fetch(url, part, timeout, allow_resume=False)
            mode = "ab"
        else:
            mode, have = "wb", 0  # fresh download, or a server that ignores Range
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = 0
        problem = None
        with open(part, mode) as out:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if problem is None and expected is not None and got < expected:
            problem = "the connection closed early"
        if problem is not None:
            total = f" of {have + expected:,}" if expected is not None else ""
            raise DownloadError(
                f"download of {url} was interrupted after {have + got:,}{total} bytes "
                f"({problem}); the partial file {part} is kept and the next attempt resumes it",
                "run the same command again to resume",
                status="interrupted",
            )


# --------------------------------------------------------------------------- extraction


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stale_partials(parent: Path) -> None:
    """Drop `.partial-<pid>-*` folders left by extractions whose process died mid-way."""
    for entry in parent.glob(".partial-*"):
        m = re.match(r"\.partial-(\d+)-", entry.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _unsafe(archive: Path, name: str, why: str) -> DataError:
    return DataError(
        f"refusing to extract {archive}: member {name!r} {why}; nothing was kept",
        "the archive is damaged or not the expected dataset; fetch it again from its source",
        status="unsafe",
    )


def _check_member(archive: Path, member: tarfile.TarInfo, target: str) -> None:
    """Our own checks, made before tarfile's data filter so the message can be precise.

    Plain string tests on purpose: this runs for each of IMDB's 100,000 members. With no
    absolute name, no '..' and no links, a member written into a fresh folder stays inside it.
    """
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or name[1:2] == ":":
        raise _unsafe(archive, name, "has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise _unsafe(archive, name, "climbs out of the target folder with '..'")
    if member.isfile() or member.isdir():
        return
    if member.issym() or member.islnk():
        link = member.linkname
        full = os.path.normpath(os.path.join(target, name))
        base = os.path.dirname(full) if member.issym() else target
        dest = os.path.normpath(os.path.join(base, link))
        if os.path.isabs(link) or not dest.startswith(target + os.sep):
            raise _unsafe(archive, name, f"is a link pointing outside the target ({link!r})")
        raise _unsafe(archive, name, "is a link; only regular files and folders are expected")
    raise _unsafe(archive, name, "is a device, pipe or other special file")


def extract_tar_atomically(
    archive: Path,
    final_dir: Path,
    *,
    on_file: Callable[[str, bytes], None] | None = None,
    finish: Callable[[Path], None] | None = None,
) -> bool:
    """Extract `archive` so that `final_dir` appears only once complete and checked.

    Members go into a fresh `.partial-<pid>-*` folder beside `final_dir` (same filesystem, so
    the final rename is atomic); an interrupted run therefore never leaves something that looks
    finished. Each member passes our own path checks and then tarfile's "data" filter, and
    only regular files and folders are written. `on_file(name, bytes)` sees every file as it
    streams by (one pass over a large archive instead of two); `finish(tmp)` may check the
    result and add files before the rename. Returns False if another process finished first.
    """
    parent = final_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=parent))
    try:
        _extract_members(archive, tmp, on_file)
        if finish is not None:
            finish(tmp)
        try:
            os.rename(tmp, final_dir)
        except OSError:
            if final_dir.is_dir():  # a concurrent extraction won the race; its copy is as good
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            raise
        return True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract_members(
    archive: Path, tmp: Path, on_file: Callable[[str, bytes], None] | None
) -> None:
    target = os.path.realpath(tmp)
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4
    made: set[str] = {target}
    try:
        # "r:*" rather than the stream mode "r|*": through gzip.GzipFile a cut-short archive
        # raises EOFError, while the stream mode would quietly end early at a member boundary.
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                _check_member(archive, member, target)
                if data_filter is not None:
                    try:
                        member = data_filter(member, target)
                    except tarfile.FilterError as exc:
                        raise _unsafe(
                            archive, member.name, f"was refused by tarfile ({exc})"
                        ) from None
                path = os.path.join(target, member.name)
                if member.isdir():
                    if path not in made:
                        os.makedirs(path, exist_ok=True)
                        made.add(path)
                    continue
                folder = os.path.dirname(path)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                source = tar.extractfile(member)
                data = source.read() if source is not None else b""
                if len(data) != member.size:
                    raise EOFError(f"{member.name} is cut short")
                with open(path, "wb") as out:
                    out.write(data)
                if on_file is not None:
                    on_file(member.name, data)
    except KeraslabError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
            raise KeraslabError(
                f"could not extract {archive}: {exc}", "check free disk space in keraslab's cache"
            ) from None
        raise DataError(
            f"{archive} is damaged and cannot be read as a tar archive "
            f"({type(exc).__name__}: {exc})",
            "replace the archive with a good copy, or delete it so keraslab looks elsewhere",
        ) from None
