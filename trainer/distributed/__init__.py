"""Data-parallel training over MPI (mpi4py), Horovod's model: every rank holds the whole
model, each optimizer step's global batch is split by rows across the ranks, gradient
sums are added up with one fused allreduce, and every rank applies the same update.

Floor: it uses numpy, mpi4py (optional, the ``mpi`` extra) and ``trainer.errors``.
``world`` (the communicator, ``current()``), ``shard`` (which rows of the batch this
rank holds while a step runs: the layers ask it for global statistics and masks),
``startup`` (the agreement checks before a run starts).
"""
