"""Every script in benchmarks/ runs in its smoke mode (the smallest sizes, one repeat, a
fraction of a second of timing), so a benchmark that breaks fails here like any other
code. What is checked is the exit status and the fields of the JSON output with
plausible values, never a speed: ratios only where a peer (PyTorch) ran."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
TIMEOUT = 600  # a fresh checkout compiles the Numba kernels once


def run_script(name, *args, tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(BENCH / name), "--smoke", "--json", str(out),
                           *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"{name} --smoke exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert out.exists(), f"{name} --smoke wrote no JSON:\n{proc.stdout[-2000:]}"
    return json.loads(out.read_text()), proc.stdout


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_machine(meta):
    assert meta["smoke"] is True
    assert "cpu_model" in meta and isinstance(meta["simd"], list)
    assert meta["cpus"] >= 1 and meta["date"]


# scripts (files with a __main__ block) and the test that runs each in smoke mode;
# the other files are helpers the scripts load (callbacks, the machine's description)
SMOKE_TESTED = {"run.py": "test_run_smoke", "bench_hdf5.py": "test_bench_hdf5_smoke",
                "bench_conv.py": "test_bench_conv_smoke",
                "profile_resnet50.py": "test_profile_resnet50_smoke",
                "bench_bn.py": "test_bench_bn_smoke",
                "bench_mlp_infer.py": "test_bench_mlp_infer_smoke"}
HELPERS = {"first_step_hook.py": "run.py's quickstart case",
           "epoch_timer.py": "bench_hdf5.py's epoch timing",
           "hostinfo.py": "both scripts' --json meta",
           "resnet50_models.py": "run.py's resnet50 case",
           "predict_cli.py": "run.py's predict case (trainer predict and ONNX Runtime's script)"}


def test_run_names_numbas_vector_width_of_this_cpu(monkeypatch):
    """run.py's table says whether our child's Numba compiles with AVX-512: by the
    target Numba really has — on the host target, this CPU's features (it said "with
    AVX-512" on an AVX2-only machine)."""
    from llvmlite import binding
    from numba.core import config

    if config.CPU_NAME or config.CPU_FEATURES:
        pytest.skip("NUMBA_CPU_NAME/NUMBA_CPU_FEATURES set for this process")
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    host = bool(binding.get_host_cpu_features().get("avx512f", False))
    assert run._versions("ours")["numba_avx512"] is host


def test_run_calls_a_case_unsteady_when_one_frameworks_repeats_spread(monkeypatch):
    """A low load average does not make a steady machine (a VM's neighbours move its
    speed): run.py names every case where one framework's own repeats spread more
    than the limit (max/min)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    def reps(*rates):
        return [{"rates": [r], "peak_rss_mb": 100.0, "first_step_s": 1.0} for r in rates]

    steady = run.summarize("mlp", "infer", 1024, 1.0,
                           {"ours": reps(100, 110, 105), "torch": reps(90, 95, 99)})
    shaky = run.summarize("cnn", "infer", 1024, 1.0,
                          {"ours": reps(900, 1336, 774), "torch": reps(700, 730, 690),
                           "onnxruntime": reps(822, 1625, 1470)})
    assert steady["repeat_spread"]["ours"] == pytest.approx(1.1)
    assert shaky["repeat_spread"]["onnxruntime"] == pytest.approx(1625 / 822)
    assert run.unsteady([steady, shaky], 1.25) == [
        ("cnn", "infer", "onnxruntime", pytest.approx(1625 / 822)),
        ("cnn", "infer", "ours", pytest.approx(1336 / 774))]
    assert run.unsteady([steady, shaky], 2.0) == []
    one = run.summarize("cnn", "train", 128, 1.3, {"ours": reps(300), "torch": reps(250)})
    assert one["repeat_spread"] == {}


def test_every_benchmark_script_has_a_smoke_test():
    files = {p.name: p.read_text() for p in BENCH.glob("*.py")}
    scripts = {name for name, text in files.items() if '__name__ == "__main__"' in text}
    assert scripts == set(SMOKE_TESTED), (
        f"benchmarks/ scripts {sorted(scripts)}; smoke-tested {sorted(SMOKE_TESTED)}: give a "
        f"new script a --smoke mode and a test here")
    assert set(files) - scripts == set(HELPERS), "a helper module is not listed in HELPERS"
    for name in scripts:
        assert "--smoke" in files[name] and "--json" in files[name], name


# ------------------------------------------------------------------------- run.py

RUN_CASES = {  # case → the (mode) rows it reports, as benchmarks/run.py's JOBS
    "cnn": ["train", "infer"], "mlp": ["train", "infer"], "tiny": ["train"],
    "lstm": ["train"], "gemm": ["infer"], "quickstart": ["fit"],
    "resnet50": ["infer", "finetune-frozen", "finetune"],
    "mpi": ["cnn", "mlp"],  # the models; each row holds its layouts (ranks × threads)
    "predict": ["cnn", "mlp"],  # the models, end to end through the CLI
}


def have_mpi():
    import importlib.util
    import shutil

    return shutil.which("mpiexec") is not None and importlib.util.find_spec("mpi4py") is not None


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_smoke(case, tmp_path):
    if case == "mpi" and not have_mpi():
        pytest.skip("mpiexec or mpi4py missing")
    # never PyTorch in the default tests (it runs where installed by hand otherwise)
    data, stdout = run_script("run.py", "--cases", case, "--no-torch", tmp_path=tmp_path)
    meta = data["meta"]
    check_machine(meta)
    assert (meta["repeats"], meta["warmup"]) == (1, 0) and meta["seconds"] < 1
    assert data["errors"] == [] and meta["unsteady"] == []  # no verdict from one repeat
    assert [(r["case"], r["mode"]) for r in data["rows"]] == [(case, m) for m in RUN_CASES[case]]
    peers = [fw for fw in meta["frameworks"] if fw != "ours"]
    for row in data["rows"]:
        assert row["met"] is None  # no verdict from smoke numbers
        if case == "predict":  # trainer predict and ONNX Runtime's script, end to end
            rep = row["repeats"][0]
            big = {"cnn": 33, "mlp": 257}[row["mode"]]  # predict_cli.BIG
            assert positive(rep["in_process"]) and row["cli_rows"] == big * row["batch"]
            if "onnxruntime" in peers:  # the same exported model: the same predictions
                assert row["max_abs_diff_onnxruntime"] < 1e-4
            assert f"{row['mode']:<5} | " in stdout
            continue
        ours = row["ours"]
        assert len(ours["repeats"]) == 1
        assert positive(ours["peak_rss_mb"]) and positive(ours["first_step_s"])
        assert row["met"] is None  # no verdict from smoke numbers
        if case == "quickstart":
            assert ours["samples_per_s"] is None and row["ratio"] is None
            continue
        if case == "mpi":  # 2 ranks × 1 thread against 1 × 2 and 1 × 1, no peer
            assert list(row["layouts"]) == ["2x1", "2x1-f32", "1x2", "1x1"]
            assert row["ratio"] is None
            for name, layout in row["layouts"].items():
                assert positive(layout["samples_per_s"]), name
                assert len(layout["repeats"]) == 1 and layout["repeats"][0]["steps"][0] >= 1
            two = row["layouts"]["2x1"]
            assert positive(two["allreduce_s_per_step"]) and two["repeats"][0]["ranks"] == 2
            # the fused buffer: every weight's gradient, the losses and metric sums, float64
            assert two["bytes_per_step"] > 8 * (784 * 512 if row["mode"] == "mlp" else 1e6)
            assert row["layouts"]["2x1-f32"]["bytes_per_step"] == two["bytes_per_step"] / 2
            assert row["layouts"]["1x1"]["bytes_per_step"] == 0
            assert ours["samples_per_s"] == two["samples_per_s"]
            assert f"{row['mode']:<5} | 2x1" in stdout
            continue
        assert row["batch"] == 2
        assert positive(ours["samples_per_s"]) and ours["repeats"][0]["steps"][0] >= 1
        if "torch" in peers:
            torch = row["torch"]
            assert positive(torch["samples_per_s"]) and positive(torch["peak_rss_mb"])
            assert row["ratio"] == pytest.approx(ours["samples_per_s"] / torch["samples_per_s"])
        else:  # no peer ran: no peer figures and no ratio
            assert row["torch"]["samples_per_s"] is None and row["torch"]["repeats"] == []
            assert row["ratio"] is None and row["pair_ratios"] == []
        ort_case = case in ("cnn", "mlp", "tiny", "lstm")  # run.py's onnx_measures
        if "onnxruntime" in peers and row["mode"] == "infer" and ort_case:
            ort = row["onnxruntime"]  # the second inference peer: our exported model
            assert positive(ort["samples_per_s"]) and len(ort["repeats"]) == 1
            assert row["ratio_onnxruntime"] == pytest.approx(
                ours["samples_per_s"] / ort["samples_per_s"])
        assert any(ln.startswith(f"{case} ") and f"| {row['mode']} " in ln
                   for ln in stdout.splitlines()), f"no table row for {case} {row['mode']}"
    assert "smoke mode" in stdout
    assert ("trainer predict samples/s" if case == "predict" else "ours samples/s") in stdout


def test_run_table_names_the_machine_and_blas(tmp_path):
    data, stdout = run_script("run.py", "--cases", "tiny", tmp_path=tmp_path)
    meta = data["meta"]
    assert set(meta["blas"]) == {"name", "version", "kernel", "coretype_env"}
    assert meta["load_limit"] == 0.5 and isinstance(meta["loaded_pairs"], int)
    assert any(ln.startswith("machine: ") and "SIMD: " in ln and "BLAS: " in ln
               for ln in stdout.splitlines())
    assert ("UNDER LOAD" in stdout) == (meta["loaded_pairs"] > 0)


def test_run_repeats_a_loaded_pair_and_says_so(monkeypatch, capsys):
    """A pair measured while the load minus our child exceeds the limit is measured
    again; one still loaded after the retries is kept and the title says so."""
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    loads = iter([3.0, 0.1, 3.0, 3.0])  # pair 1: loaded, then quiet; pair 2: loaded twice

    def fake_child(fw, case, mode, batch, args):
        load = next(loads)
        return {"framework": fw, "rates": [100.0], "steps": [1], "first_step_s": 0.1,
                "peak_rss_mb": 10.0, "loadavg": [load, load], "layouts": {}}

    monkeypatch.setattr(run, "run_child", fake_child)
    monkeypatch.setattr(run, "have_torch", lambda: False)
    args = run.parse(["--cases", "tiny", "--repeats", "2", "--load-retries", "1",
                      "--threads", "2", "--no-onnx"])
    run.parent(args)
    out = capsys.readouterr()
    assert out.err.count("repeating the pair") == 2  # each loaded pair once more
    assert "UNDER LOAD" in out.out and "1 measurement(s)" in out.out


def test_run_isa_avx2_caps_numba_openblas_and_torch(monkeypatch):
    """``--isa avx2`` gives every child an environment that keeps Numba's code, the BLAS
    kernel and PyTorch at AVX2 (checked on compiled code: no zmm register in a
    vectorised loop), and leaves ONNX Runtime out."""
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    monkeypatch.setattr(run, "ISA", "avx2")
    env = run.child_env(2)
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["NUMBA_CPU_NAME"] == "haswell" and "+avx512" not in env["NUMBA_CPU_FEATURES"]
    code = ("import numba, numpy as np\n"
            "@numba.njit(fastmath=True)\n"
            "def axpy(a, x, y):\n"
            "    for i in range(x.size):\n"
            "        y[i] += a * x[i]\n"
            "x = np.ones(64, np.float32)\n"
            "axpy(np.float32(2), x, x.copy())\n"
            "print('zmm' in ''.join(axpy.inspect_asm().values()))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    monkeypatch.setattr(run, "ISA", "native")
    assert "NUMBA_CPU_FEATURES" not in run.child_env(2) or "NUMBA_CPU_FEATURES" in os.environ


# ---------------------------------------------------------------- bench_conv.py

def test_bench_conv_smoke(tmp_path):
    """Winograd against im2col in one process, interleaved; the model rows and the
    share of the training step in convolutions."""
    data, stdout = run_script("bench_conv.py", tmp_path=tmp_path)
    check_machine(data["meta"])
    rows = data["rows"]
    assert [(r["case"], r["mode"]) for r in rows] == [
        (name, mode) for name in ("conv1", "conv2", "conv3", "conv4", "cnn")
        for mode in ("train", "infer")]
    for r in rows:
        assert positive(r["im2col"]) and positive(r["winograd"])
        assert r["ratio"] == pytest.approx(r["winograd"] / r["im2col"], rel=0.5)
    assert set(data["conv_share"]) == {"im2col", "auto"}
    assert all(0 < v <= 1 for v in data["conv_share"].values())
    assert "Winograd / im2col" in stdout


def test_bench_conv_profile_smoke(tmp_path):
    """--cases profile: per-layer and per-operation CPU time of the cnn's two steps, each
    GEMM shape with its rate beside sgemm alone on that shape."""
    data, stdout = run_script("bench_conv.py", "--cases", "profile", tmp_path=tmp_path)
    assert [p["mode"] for p in data["profile"]] == ["train", "infer",
                                                   "infer, layers one by one"]
    for p in data["profile"]:
        parts = p["parts"]
        assert positive(p["step_ms"]) and any(k.startswith("00 Conv2D") for k in parts)
        gemms = [k for k in parts if k.startswith("gemm ")]
        assert all(positive(parts[k]["gflops"]) and positive(parts[k]["alone_gflops"])
                   for k in gemms)
        assert gemms or any(k.startswith("direct conv kernel") for k in parts)
        assert sum(v["ms"] for k, v in parts.items() if " fwd" in k or " bwd" in k) <= (
            p["step_ms"] * 1.05)
    assert "01 Conv2D bwd" in data["profile"][0]["parts"]
    assert "ms a step (CPU time, 1 thread)" in stdout


def test_bench_conv_ort_smoke(tmp_path):
    """--cases ort: the cnn's predict against the layers one by one (its conv chains
    off) and ONNX Runtime when installed, interleaved in one process."""
    data, stdout = run_script("bench_conv.py", "--cases", "ort", "--threads", "1",
                              tmp_path=tmp_path)
    peers = [r["peer"] for r in data["ort"]]
    assert peers[0] == "ours, layers one by one" and set(peers[1:]) <= {"onnxruntime"}
    for r in data["ort"]:
        assert positive(r["ours"]) and positive(r["peer_rate"]) and positive(r["ratio"])
        assert r["clock"] == "process CPU time"
    assert "ours / peer" in stdout


def test_bench_conv_direct_smoke(tmp_path):
    """--cases direct: the direct convolution against TRAINER_CONV_DIRECT=off, per layer
    and for the whole model, interleaved."""
    data, stdout = run_script("bench_conv.py", "--cases", "direct", tmp_path=tmp_path)
    rows = data["direct"]
    assert [(r["case"], r["mode"]) for r in rows] == [
        (name, mode) for name in ("conv1", "conv2", "conv3", "conv4", "cnn")
        for mode in ("train", "infer")]
    for r in rows:
        assert positive(r["old"]) and positive(r["new"]) and r["paths"][0] == "direct-off"
        assert r["ratio"] == pytest.approx(r["new"] / r["old"], rel=0.5)
    assert "Direct convolution / direct-off" in stdout


def test_profile_resnet50_smoke(tmp_path):
    """Per layer type, forward and backward: the rows cover the convolutions both ways
    and sum to no more than the step."""
    data, stdout = run_script("profile_resnet50.py", tmp_path=tmp_path)
    check_machine(data["meta"])
    assert positive(data["step_ms"])
    rows = {(r["layer"], r["phase"]): r for r in data["rows"]}
    assert ("Conv2D 7x7/s2", "fwd") in rows and ("Conv2D 1x1/s1", "bwd") in rows
    assert ("BatchNormalization", "bwd") in rows
    assert sum(r["ms"] for r in data["rows"]) <= data["step_ms"] * 1.05
    assert "unattributed" in stdout


# -------------------------------------------------------------------- bench_hdf5.py

def test_bench_hdf5_smoke(tmp_path):
    """The epoch is timed through a callback: with the loop's internals patched instead,
    the script crashed once the patched method stopped being called (issue 30)."""
    data, stdout = run_script("bench_hdf5.py", "--dir", str(tmp_path), tmp_path=tmp_path)
    meta = data["meta"]
    check_machine(meta)
    assert meta["rows"] == 2048 and meta["slice_rows"] == 1024 and positive(meta["file_bytes"])
    rows = data["rows"]
    assert [r["case"] for r in rows] == ["hdf5", "hdf5-slice", "memory"]
    assert [r["rows"] for r in rows] == [2048, 1024, 1024]
    for r in rows:
        assert r["status"] == "completed"
        assert positive(r["peak_rss_mb"]) and positive(r["rss_after_imports_mb"])
        assert r["peak_rss_mb"] >= r["rss_after_imports_mb"]
        assert positive(r["epoch_seconds"]) and r["epoch_seconds"] <= r["seconds"]
        assert r["samples_per_s"] == pytest.approx(r["rows"] / r["epoch_seconds"])
        assert math.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1
    assert "samples/s" in stdout and stdout.count("\nhdf5") == 2
    assert list(tmp_path.glob("trainer_bench_hdf5_*")) == []  # its scratch folder is gone


# ---------------------------------------------------------------------- hostinfo.py

def test_hostinfo_reads_the_cpu_model_and_only_its_simd_flags(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from hostinfo import cpuinfo

    x86 = ("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse sse2 ssse3 "
           "fma sse4_1 sse4_2 avx aes avx2 avx512f avx512_vnni bmi2\n\nprocessor\t: 1\n"
           "model name\t: AMD EPYC 9B45\nflags\t\t: fpu sse\n")
    assert cpuinfo(x86) == ("AMD EPYC 9B45", ["sse", "sse2", "ssse3", "fma", "sse4_1",
                                              "sse4_2", "avx", "avx2", "avx512f",
                                              "avx512_vnni"])
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve sve2\nModel\t\t: Pi 5\n"
    assert cpuinfo(arm) == ("Pi 5", ["asimd", "sve", "sve2"])


def test_bench_bn_smoke(tmp_path):
    """BatchNormalization's compiled training passes against the NumPy lines, per shape
    and chain (alone, with a relu, with an Add then a relu), interleaved."""
    data, stdout = run_script("bench_bn.py", tmp_path=tmp_path)
    check_machine(data["meta"])
    assert {r["chain"] for r in data["rows"]} == {"plain", "relu", "add"}
    assert all(positive(r["old_ms"]) and positive(r["new_ms"]) and positive(r["speedup"])
               for r in data["rows"])
    assert "old / new" in stdout
    step, _ = run_script("bench_bn.py", "--step", tmp_path=tmp_path)
    assert [r["chain"] for r in step["rows"]] == ["step"] and positive(step["rows"][0]["speedup"])


def test_bench_mlp_infer_smoke(tmp_path):
    """The MLP's in-process inference at 1 and 2 threads (beside ONNX Runtime where it
    is installed); --profile: one thread's slice and the 2-thread timeline."""
    import importlib.util

    data, stdout = run_script("bench_mlp_infer.py", tmp_path=tmp_path)
    check_machine(data["meta"])
    assert [r["threads"] for r in data["rows"]] == [1, 2]
    assert all(positive(r["ours_samples_per_s"]) for r in data["rows"])
    if importlib.util.find_spec("onnxruntime") is not None:
        assert all(positive(r["ours_vs_onnxruntime"]["median"]) for r in data["rows"])
    prof, _ = run_script("bench_mlp_infer.py", "--profile", tmp_path=tmp_path)
    assert positive(prof["profile"]["gemm 784->512"]["gflops"])
    assert positive(prof["profile"]["predict_on_batch 1024"]["us"])
    assert all(positive(prof["timeline"][k]["median_us"])
               for k in ("wall", "parallel region", "one part alone", "part 0 beside part 1"))
