"""The Dense chain's softmax output takes one path fixed by the block's shape, never by
what the process happened to load before: a validation round in a resumed process (that
has not imported Numba yet) gives the same bits as in the run it resumes (that has)."""

import subprocess
import sys

import numpy as np

SCRIPT = """
import sys
import numpy as np
if sys.argv[1] == "numba-first":
    import numba  # as a process that compiled a convolution or an optimizer update did
from trainer import activations
from trainer.engine.kernels import dense_chain

rng = np.random.default_rng(7)
x = rng.standard_normal((512, 64)).astype(np.float32)  # 512x10: 5,120 outputs
W = rng.standard_normal((64, 10)).astype(np.float32)
b = rng.standard_normal(10).astype(np.float32)
step = dense_chain.Dense(W, b, False, activations.get("softmax"))
sys.stdout.write(step(x).tobytes().hex())
"""


def run(mode):
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                         text=True, check=True)
    return np.frombuffer(bytes.fromhex(out.stdout), np.float32)


def test_softmax_output_bits_do_not_hang_on_numba_being_loaded():
    fresh, loaded = run("fresh"), run("numba-first")
    np.testing.assert_array_equal(fresh, loaded)
