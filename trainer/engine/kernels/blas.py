"""The BLAS NumPy itself loaded, reached directly: its thread count (``threads``) and
its float32 GEMM as a C function a compiled kernel can call without the GIL (``sgemm``).

NumPy's wheels carry OpenBLAS under a prefix of their own (``scipy_openblas64_`` in
NumPy 2, ``openblas64_`` in NumPy 1), with 64-bit integers; a NumPy built against a
system OpenBLAS has the plain names. The library is found among the files this process
has mapped (NumPy has loaded it by the time the engine runs). Another BLAS (MKL,
Accelerate): None for both, and the callers keep to NumPy's own calls.
"""

import ctypes

#: (the function-name prefix, its suffix, the C integer type of its sizes), by the
#: names a library exports, in the order they are tried
_FLAVOURS = (("scipy_openblas", "64_", ctypes.c_int64), ("openblas", "64_", ctypes.c_int64),
             ("openblas", "", ctypes.c_int))

_found = None


def _library():
    """(the ctypes library, prefix, suffix, integer type) of NumPy's OpenBLAS, or
    None; looked up once."""
    global _found
    if _found is None:
        _found = False
        import numpy.linalg  # noqa: F401 (makes sure NumPy has loaded its BLAS)

        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        except OSError:
            paths = set()
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix, integer in _FLAVOURS:
                if hasattr(lib, f"{prefix}_get_num_threads{suffix}"):
                    _found = (lib, prefix, suffix, integer)
                    break
            if _found:
                break
    return _found or None


def threads():
    """(get, set) of the OpenBLAS's global thread count, or None."""
    found = _library()
    if found is None:
        return None
    lib, prefix, suffix, _ = found
    get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
    put = getattr(lib, f"{prefix}_set_num_threads{suffix}")
    get.argtypes, get.restype = [], ctypes.c_int
    put.argtypes, put.restype = [ctypes.c_int], None
    return get, put


#: CBLAS's row-major layout and no-transpose flag
ROW_MAJOR, NO_TRANS = 101, 111

_sgemm = None


def sgemm():
    """OpenBLAS's ``cblas_sgemm`` as a ctypes function a Numba kernel takes as an
    argument (and calls without the GIL), or None: another BLAS, or an OpenBLAS with
    32-bit sizes (the kernels pass 64-bit ones). Its arguments: layout, transa,
    transb, M, N, K, alpha, A's address, lda, B's address, ldb, beta, C's address,
    ldc — addresses as 64-bit integers (``array.ctypes.data``). The same function
    NumPy's ``matmul`` calls for float32 matrices: the same bits."""
    global _sgemm
    if _sgemm is None:
        _sgemm = False
        found = _library()
        if found is not None and found[3] is ctypes.c_int64:
            lib, prefix, suffix, _ = found
            name = "scipy_cblas_sgemm64_" if prefix == "scipy_openblas" else f"cblas_sgemm{suffix}"
            fn = getattr(lib, name, None)
            if fn is not None:
                i32, i64, f32 = ctypes.c_int, ctypes.c_int64, ctypes.c_float
                fn.argtypes = [i32, i32, i32, i64, i64, i64, f32, i64, i64, i64, i64, f32,
                               i64, i64]
                fn.restype = None
                _sgemm = fn
    return _sgemm or None
