"""Fixtures every test module may use: the real data, and a keraslab cache private to the session.

- `shared_data_dir`: the read-only real data (Fashion-MNIST .gz files, the IMDB archive), found
  as env KERASLAB_DATA_DIR if set, else `<repo root>/../shared/data`.
- An autouse session fixture points KERASLAB_CACHE_DIR at a fresh folder, so no test reads or
  writes the user's cache; sets KERASLAB_OFFLINE=1, so nothing ever waits on the network (the
  download tests switch it off and serve files from 127.0.0.1); and sets KERASLAB_DATA_DIR to the
  shared data, so a plain `load("fashion_mnist")` in any test finds the real files.
  The cache lives for the whole session, so the IMDB archive is unpacked at most once per run:
  the first test that loads IMDB pays for it, every later one reuses it.
- `imdb_found`: the real IMDB archive unpacked into the session cache (once), for tests that
  need the unpacked tree without paying for a second unpacking.
- The session cache goes on tmpfs (/dev/shm) when there is room: unpacking IMDB's 100,000 files
  takes 30-60 s on this project's ext4 disks and about 3 s in memory. It is removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("KERASLAB_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


# Resolved at import time, before the session fixture below rewrites KERASLAB_DATA_DIR.
SHARED_DATA = _shared_data()
_TMPFS = Path("/dev/shm")
_TMPFS_PREFIX = "keraslab-test-cache-"
_TMPFS_NEEDED = 2 << 30  # the unpacked IMDB tree and its parsed copy take about 0.6 GiB


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data folder (read-only); skips the test when this checkout has none."""
    if not (SHARED_DATA / "fashion-mnist").is_dir() or not (SHARED_DATA / "imdb").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set KERASLAB_DATA_DIR)")
    return SHARED_DATA


def _remove_stale_tmpfs_caches() -> None:
    """Drop caches left in RAM by sessions that were killed before their cleanup ran."""
    for entry in _TMPFS.glob(_TMPFS_PREFIX + "*"):
        m = re.match(re.escape(_TMPFS_PREFIX) + r"(\d+)-", entry.name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _session_cache(tmp_path_factory) -> tuple[Path, bool]:
    try:
        if _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK):
            _remove_stale_tmpfs_caches()
            st = os.statvfs(_TMPFS)
            if st.f_bavail * st.f_frsize >= _TMPFS_NEEDED:
                return Path(
                    tempfile.mkdtemp(prefix=f"{_TMPFS_PREFIX}{os.getpid()}-", dir=_TMPFS)
                ), True
    except OSError:
        pass
    return tmp_path_factory.mktemp("keraslab-cache"), False


@pytest.fixture(scope="session", autouse=True)
def keraslab_session_cache(tmp_path_factory):
    """The session's keraslab cache folder (also in env KERASLAB_CACHE_DIR)."""
    cache, on_tmpfs = _session_cache(tmp_path_factory)
    mp = pytest.MonkeyPatch()
    mp.setenv("KERASLAB_CACHE_DIR", str(cache))
    mp.setenv("KERASLAB_OFFLINE", "1")
    if SHARED_DATA.is_dir():
        mp.setenv("KERASLAB_DATA_DIR", str(SHARED_DATA))
    try:
        yield cache
    finally:
        mp.undo()
        if on_tmpfs:
            shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def imdb_found(shared_data_dir, keraslab_session_cache):
    """The real archive, unpacked once into the session cache (the slow step of the data tests).

    Session-scoped fixtures are set up before function-scoped ones, so this runs with the
    session's environment even in a test that then redirects KERASLAB_CACHE_DIR elsewhere.
    """
    from keraslab.data import imdb

    found, _ = imdb.find(shared_data_dir)
    assert (
        found.extracted_to is not None
        and found.extracted_to.parent.parent == keraslab_session_cache
    )
    return found
