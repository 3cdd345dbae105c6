"""Files Keras downloads (application weights, datasets), found in Keras's own cache
or fetched from Keras's URLs with the hashes Keras checks.

- ``cache``: where Keras keeps them (``$KERAS_HOME`` or ``~/.keras``; ``models/``,
  ``datasets/``), so a user who ran Keras once does not download again.
- ``download``: resumable (HTTP Range), atomic (``NAME.part`` until the hash is right),
  mirrored (``TRAINER_MIRROR`` / ``--mirror``), with a rich progress bar; no network is
  one message naming the file, the URL and where to put it (exit 3).
- ``unpickle``: the few pickled files Keras's datasets ship (CIFAR batches, ragged
  npz arrays), read by a small interpreter of pickle's opcodes (not Python's pickle
  module) that builds NumPy arrays and plain containers only.
"""

from trainer.fetch.download import Remote, get_file

__all__ = ["Remote", "get_file"]
