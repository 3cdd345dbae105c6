"""erf for arrays (GELU needs it; NumPy has none): a Numba ufunc, compiled on first use."""

_ERF = None


def erf(x):
    global _ERF
    if _ERF is None:
        import math

        import numba

        @numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
        def _erf(v):
            return math.erf(v)

        _ERF = _erf
    return _ERF(x)
