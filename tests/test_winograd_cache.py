"""The Winograd transforms load from Numba's disk cache in a new process instead of
compiling again (they used to: defined inside a function, the input and gradient
transforms, which call another jitted function, missed the cache in every process and
cost 5-7 s at each process's first Winograd convolution; the cache folder grew an
entry a process)."""

import json
import os
import subprocess
import sys

CODE = """
import json
import numpy as np
from trainer.engine.kernels import winograd_transforms as wt
k = wt.kernels()
x = np.ones((1, 6, 6, 3), np.float32)
V = np.zeros((16, wt.slab_rows(9), 3), np.float32)
k["input"](x, 0, 1, 1, 1, 3, 3, V)
dz = np.ones((1, 6, 6, 3), np.float32)
D = np.zeros((16, wt.slab_rows(9), 3), np.float32)
k["grad"](dz, 0, 1, 3, 3, D)
print(json.dumps({name: [sum(k[name].stats.cache_hits.values()),
                         sum(k[name].stats.cache_misses.values())]
                  for name in ("input", "grad")}))
"""


def run(cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_transforms_from_the_cache(tmp_path):
    run(tmp_path)  # compiles and writes the cache
    second = run(tmp_path)
    for name, (hits, misses) in second.items():
        assert hits >= 1 and misses == 0, (name, second)
