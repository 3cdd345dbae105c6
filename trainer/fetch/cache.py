"""Keras's cache folders: ``$KERAS_HOME`` (else ``~/.keras``), ``models/`` for
application weights and ``datasets/`` for datasets, with Keras's fallback to
``/tmp/.keras`` when the home one cannot be written."""

import os
import tempfile
from pathlib import Path


def keras_home():
    """The folder Keras caches into: ``$KERAS_HOME`` or ``~/.keras``."""
    env = os.environ.get("KERAS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".keras"


def cache_dir(subdir):
    """``keras_home()/subdir``, created; Keras's fallback ``/tmp/.keras/subdir`` when
    that cannot be created or written."""
    folder = keras_home() / subdir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    folder = Path(tempfile.gettempdir()) / ".keras" / subdir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lookup(subdir, fname):
    """Where ``fname`` is (or would be) in Keras's cache, without creating anything."""
    return keras_home() / subdir / fname
