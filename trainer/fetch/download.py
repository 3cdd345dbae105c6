"""Fetch one file the way Keras's ``get_file`` does, found first in Keras's cache.

A download goes to ``NAME.part`` beside the final name and is renamed only once its
hash is right, so a partial or corrupt file never sits under the final name. An
interrupted download leaves ``NAME.part``; the next attempt asks the server for the
rest (HTTP ``Range``) and starts over if the server does not do ranges. A mirror
(``TRAINER_MIRROR`` or ``--mirror``: a base URL) replaces the scheme and host of the
URL and keeps its path.
"""

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import DataError
from trainer.fetch import cache

CHUNK = 1 << 16
TIMEOUT = 30  # seconds without a byte before a download is given up


@dataclass(frozen=True)
class Remote:
    """One file Keras downloads: its cache name, URL, hash and cache sub-folder.

    ``file_hash`` is SHA-256 (64 hex digits) or MD5 (32), as Keras's ``get_file``
    decides by length. ``extract`` names the folder a ``.tar.gz`` archive unpacks
    to (Keras's ``untar=True``): the archive is cached as ``fname + ".tar.gz"``.
    ``keras3_dir``: the cache folder Keras 3 extracts the archive into, when it differs
    from ``fname`` (Keras 3 keeps the archive as ``<that folder>_archive`` and the
    archive's top folder inside it).
    """

    fname: str
    origin: str
    file_hash: str | None = None
    cache_subdir: str = "datasets"
    extract: bool = False
    keras3_dir: str | None = None

    @property
    def archive_name(self):
        return self.fname + ".tar.gz" if self.extract else self.fname


def mirrored(url, mirror=None):
    """``url`` with its scheme and host replaced by the mirror's base URL (which may
    carry a path prefix); ``url`` itself when there is no mirror."""
    mirror = mirror or os.environ.get("TRAINER_MIRROR") or None
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if not base.scheme or not base.netloc:
        raise DataError(f"TRAINER_MIRROR/--mirror: expected a base URL such as "
                        f"http://mirror.example.com/keras, got {mirror!r}")
    src = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((base.scheme, base.netloc,
                                    base.path.rstrip("/") + src.path, src.query, ""))


def hash_file(path, file_hash):
    """The hex digest of ``path`` with the algorithm Keras picks for ``file_hash``."""
    h = hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_ok(path, file_hash):
    return file_hash is None or hash_file(path, file_hash) == file_hash.lower()


def get_file(remote, *, mirror=None, progress=None):
    """The local path of ``remote`` (the extracted folder when ``remote.extract``):
    from Keras's cache if there, else downloaded into it. Raises DataError (exit 3)
    when it cannot be fetched or its hash is wrong."""
    if remote.extract:
        folder = _extracted(remote)
        if folder is not None:
            return folder
        kept = _keras3_archive(remote)
        if kept is not None:  # Keras 3 downloaded it: unpack it where Keras 2 does
            from trainer.fetch.archive import extract_tar

            target = cache.cache_dir(remote.cache_subdir) / remote.fname
            return extract_tar(kept, target)
    final = cache.lookup(remote.cache_subdir, remote.archive_name)
    if not (final.is_file() and _hash_ok(final, remote.file_hash)):
        final = cache.cache_dir(remote.cache_subdir) / remote.archive_name
        _download(remote, final, mirrored(remote.origin, mirror), progress)
    if remote.extract:
        from trainer.fetch.archive import extract_tar

        return extract_tar(final, final.parent / remote.fname)
    return final


def _extracted(remote):
    """The unpacked folder in Keras's cache, Keras 2's layout (``datasets/NAME/``) or
    Keras 3's (``datasets/<dir>/NAME/``), or None."""
    candidates = [cache.lookup(remote.cache_subdir, remote.fname) / remote.fname,
                  cache.lookup(remote.cache_subdir, remote.fname)]
    if remote.keras3_dir:
        candidates.insert(0, cache.lookup(remote.cache_subdir, remote.keras3_dir) / remote.fname)
    for folder in candidates:
        if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
            return folder
    return None


def _keras3_archive(remote):
    """Keras 3's copy of the archive (``<dir>_archive``) when its hash is right."""
    name = f"{remote.keras3_dir or remote.fname}_archive"
    path = cache.lookup(remote.cache_subdir, name)
    return path if path.is_file() and _hash_ok(path, remote.file_hash) else None


def _download(remote, final, url, progress):
    part = final.with_name(final.name + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    _transfer(url, part, final, progress, remote.origin)
    if not _hash_ok(part, remote.file_hash):
        part.unlink()
        if resumed:  # the kept part may be of another version of the file: start over
            _transfer(url, part, final, progress, remote.origin)
            if _hash_ok(part, remote.file_hash):
                os.replace(part, final)
                return
            part.unlink()
        raise DataError(
            f"{remote.archive_name}: downloaded from {url}, but its "
            f"{'SHA-256' if len(remote.file_hash) == 64 else 'MD5'} hash is not "
            f"{remote.file_hash} as Keras expects; the file was removed (a proxy or "
            f"mirror serving another file?)")
    os.replace(part, final)


def _transfer(url, part, final, progress, origin):
    """Append the rest of ``url`` to ``part`` (all of it when the server ignores the
    Range request)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "trainer"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part is already whole
            return
        raise DataError(f"{final.name}: {url} answered HTTP {exc.code} {exc.reason}; "
                        f"{_where_to_put(final, origin)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{final.name}: cannot download {url} ({reason}); no network? "
                        f"{_where_to_put(final, origin)}") from None
    with response:
        if response.status != 206:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        try:
            with open(part, "ab" if offset else "wb") as f, \
                    _Progress(final.name, url, total, offset, progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.advance(len(block))
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, OSError) and not _is_network_error(exc):
                raise
            raise DataError(f"{final.name}: the download from {url} broke off ({exc}); "
                            f"run again to resume it from {part}") from None


def _is_network_error(exc):
    import socket

    return isinstance(exc, (socket.timeout, ConnectionError, urllib.error.URLError))


def _where_to_put(final, url):
    return (f"fetch {url} on a machine with network and put it at {final}, or set "
            f"TRAINER_MIRROR (or --mirror) to a mirror's base URL")


class _Progress:
    """A rich download bar on stderr when it is a terminal; one line otherwise."""

    def __init__(self, name, url, total, done, enabled):
        self.name, self.url, self.total, self.done = name, url, total, done
        self.auto = enabled is None
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            if self.auto:  # a log, not a terminal: say what is being fetched, once
                print(f"downloading {self.name} from {self.url}", file=sys.stderr)
            return self
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(),
                             console=Console(file=sys.stderr), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(f"{self.name}", total=self.total,
                                        completed=self.done)
        return self

    def advance(self, n):
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
