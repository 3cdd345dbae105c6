"""Unpack a cached ``.tar.gz`` the way Keras's ``untar=True`` leaves it: the archive's
top folder beside the archive. Members that would land outside it (absolute paths,
``..``, links) are refused, and the folder appears under its final name only once
every member is written."""

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from trainer.errors import DataError


def extract_tar(archive, target):
    """Unpack ``archive`` (whose members sit in one top folder named as ``target``)
    to ``target``; returns ``target``."""
    target = Path(target)
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar.getmembers():
                    _check(member, archive)
                    tar.extract(member, staging, set_attrs=False)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: not a readable .tar.gz archive ({exc}); delete it "
                            f"to download it again") from None
        top = staging / target.name
        if not top.is_dir():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise DataError(f"{archive}: expected a top folder '{target.name}' in the "
                            f"archive, found {found}")
        os.replace(top, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check(member, archive):
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refusing archive member {member.name!r} (absolute "
                        f"path, '..' or a link)")
