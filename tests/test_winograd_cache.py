"""The Winograd transforms load from Numba's disk cache in a new process instead of
compiling again (they used to: defined inside a function, the input and gradient
transforms, which call another jitted function, missed the cache in every process and
cost 5-7 s at each process's first Winograd convolution; the cache folder grew an
entry a process); and each is compiled once per dtype (a compiled caller passing the
constant 0 for the first tile made a second version, for the literal: 4.5 s more)."""

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
V = np.zeros((16, wt.slab_rows(18), 3), np.float32)  # tiles 0-8, then 9-17
k["input"](x, 0, 1, 1, 1, 3, 3, V)
k["input_at"](x, 0, 1, 1, 1, 3, 3, V, 9)
dz = np.ones((1, 6, 6, 3), np.float32)
D = np.zeros((16, wt.slab_rows(18), 3), np.float32)
k["grad"](dz, 0, 1, 3, 3, D)
k["grad_at"](dz, 0, 1, 3, 3, D, 9)
print(json.dumps({name: [sum(k[name].stats.cache_hits.values()),
                         sum(k[name].stats.cache_misses.values()), len(k[name].signatures)]
                  for name in ("input_at", "grad_at")}))
"""


def run(cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_transforms_from_the_cache(tmp_path):
    first = run(tmp_path)  # compiles and writes the cache
    for name, (hits, misses, versions) in first.items():
        assert versions == 1, (name, first)  # from tile 0 and from tile 9 alike
    second = run(tmp_path)
    for name, (hits, misses, versions) in second.items():
        assert hits >= 1 and misses == 0 and versions == 1, (name, second)
