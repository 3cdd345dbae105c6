"""The communicator: rank, size, a fused allreduce of a list of arrays, broadcast,
allgather; ``current()`` is None in a single process.

A process runs under MPI with more than one rank when the launcher's environment says
so (``PMI_SIZE``/``OMPI_COMM_WORLD_SIZE``/... > 1, set by mpiexec, srun); only then is
mpi4py imported. Without mpi4py that is a usage error (exit 2) saying how to install it.
"""

import os
import sys

import numpy as np

from trainer.errors import ConfigError

#: launcher variables holding the world size (MPICH/Hydra, Open MPI, Slurm's PMI2/PMIx)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS_WORLD",
                  "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")

_state = {"world": None, "checked": False}


def launched_size():
    """The world size the launcher's environment announces (1 when none does)."""
    for name in SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def current():
    """The World of this run, or None in a single process (or a world of one rank)."""
    if not _state["checked"]:
        _state["checked"] = True
        if launched_size() > 1:
            world = World.connect()
            _state["world"] = world if world.size > 1 else None
    return _state["world"]


def active():
    """The World if this process already joined one (never connects)."""
    return _state["world"]


def leave():
    """Go on as a single process (a command rank 0 runs alone: the other ranks have
    left): no collective is called from here, an error ends this process only."""
    _state["world"], _state["checked"] = None, True


def reset(world=None):
    """Forget (or set) the world: tests, and a process that leaves MPI."""
    _state["world"], _state["checked"] = world, world is not None


class World:
    """One MPI communicator. Every collective here must be called by every rank, in
    the same order: the loop calls them at the same points on all ranks."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.allreduce_seconds = 0.0  # time spent in gradient allreduces (benchmarks)
        self.allreduce_bytes = 0
        self.allreduce_calls = 0

    @classmethod
    def connect(cls):
        try:
            from mpi4py import MPI
        except ImportError:
            raise ConfigError(
                f"trainer runs under MPI with {launched_size()} ranks but mpi4py is not "
                f"installed; install it with `pip install 'trainer[mpi]'` (mpi4py and "
                f"MPICH from the package index) or `pip install mpi4py` against your "
                f"system's MPI") from None
        return cls(MPI.COMM_WORLD)

    @property
    def is_root(self):
        return self.rank == 0

    def allreduce_sum(self, arrays, dtype=np.float64):
        """The element-wise sums over all ranks of a list of arrays, in one fused
        buffer of ``dtype`` (one call, not one per array): float64 by default (the
        ranks' float32 partial sums add up with float64's rounding, so the result
        hardly depends on the world size); float32 moves half the bytes
        (``fit.allreduce_dtype``). Returns new arrays, each of its input's shape and
        dtype."""
        import time

        from mpi4py import MPI

        sizes = [int(np.size(a)) for a in arrays]
        buffer = np.empty(sum(sizes), dtype or np.float64)
        at = 0
        for a, n in zip(arrays, sizes):
            buffer[at:at + n] = np.ravel(a)
            at += n
        start = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_bytes += buffer.nbytes
        self.allreduce_calls += 1
        out, at = [], 0
        for a, n in zip(arrays, sizes):
            dtype = a.dtype if isinstance(a, np.ndarray) else np.float64
            out.append(buffer[at:at + n].reshape(np.shape(a)).astype(dtype))
            at += n
        return out

    def allreduce_max(self, value):
        from mpi4py import MPI

        return self.comm.allreduce(value, op=MPI.MAX)

    def broadcast(self, value, root=0):
        """A Python value (JSON-like) from ``root`` to every rank."""
        return self.comm.bcast(value, root=root)

    def allgather(self, value):
        return self.comm.allgather(value)

    def host(self):
        from mpi4py import MPI

        return MPI.Get_processor_name()

    def abort(self, code):
        """Stop every rank now (a rank failed where the others cannot know it)."""
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            drained(fd)
        self.comm.Abort(code)
        # MPICH's MPI_Abort may return to the caller (the launcher then stops every
        # process): this rank must not go on reporting or running meanwhile
        os._exit(code)


def drained(fd, timeout=2.0):
    """Wait (at most ``timeout`` s) until the launcher has read what this rank wrote to
    ``fd``, when it is a pipe: an abort tears the launcher's forwarding down, and what
    it had not read yet (the error report itself) was lost (seen under load)."""
    import fcntl
    import struct
    import termios
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:  # not a pipe (a terminal, a file): nothing to wait for
            return
        if waiting == 0:
            return
        time.sleep(0.005)
