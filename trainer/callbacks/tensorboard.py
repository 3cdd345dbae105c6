"""TensorBoard: event files the real TensorBoard reads, laid out as Keras 2 writes them.

``<log_dir>/train/`` holds ``epoch_<name>`` scalars of the training logs (``epoch_loss``,
``epoch_accuracy``, ``epoch_lr``), ``batch_<name>`` scalars when ``update_freq`` asks,
weight histograms (``dense/kernel_0``), weight images and the layer graph;
``<log_dir>/validation/`` holds the ``val_`` values under the same ``epoch_<name>`` tags.
Written with tensorboardX's protocol buffers (``pip install 'trainer[tensorboard]'``),
one event file per folder and run (named after the run's start), which a resumed run
cuts back to its length at the checkpoint and continues (``event_file.EventFile``).
"""

from typing import Literal, Union

import numpy as np

from trainer.callbacks.base import Callback, check_relative, inside_run
from trainer.callbacks.event_file import BINS
from trainer.errors import ConfigError
from trainer.config.families import callbacks
from trainer.config.registry import NonNegativeInt, PositiveInt

SKIP = ("batch", "size")  # bookkeeping keys of the logs, not values


def _require(module, what):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(f"{what} needs the '{module}' package, which is not installed: "
                          f"pip install 'trainer[tensorboard]'") from None


@callbacks.register("TensorBoard")
class TensorBoard(Callback):
    """Log scalars, histograms, images and the graph for TensorBoard.

    Args:
        log_dir: folder for the event files, relative to the run folder.
        histogram_freq: every this many epochs, a histogram of every weight
            (0: never).
        write_graph: write the layer graph (one node per layer call) for the
            Graphs tab.
        write_images: with ``histogram_freq``, weights as images (Dense kernels,
            biases, 1D conv kernels; as Keras 2, 4D kernels are skipped).
        update_freq: ``epoch``; ``batch`` (scalars after every batch); or a number
            of batches between batch-level scalars.
    """

    def __init__(self, log_dir: str = "logs", histogram_freq: NonNegativeInt = 0,
                 write_graph: bool = True, write_images: bool = False,
                 update_freq: Union[Literal["epoch", "batch"], PositiveInt] = "epoch"):
        super().__init__()
        self.log_dir = check_relative(log_dir, "TensorBoard.log_dir")
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_images = write_images
        self.update_freq = update_freq
        _require("tensorboardX", "TensorBoard")
        if write_images:
            _require("PIL", "TensorBoard(write_images=true)")
        self.step = 0  # batches seen over the whole run: the x axis of batch scalars
        self._writers = {}
        self.restored = {}  # writer → its file's length at the checkpoint a resume continues

    def outputs(self):
        return [("TensorBoard.log_dir", self.log_dir, True)]

    def _writer(self, name):
        if name not in self._writers:
            from trainer.callbacks.event_file import EventFile, file_name

            inside_run(self, self.log_dir, folder=True)
            path = inside_run(self, f"{self.log_dir}/{name}/{file_name(_started(self.run))}")
            self._writers[name] = EventFile(path, self.restored.get(name))
        return self._writers[name]

    def on_train_begin(self, logs=None):
        inside_run(self, self.log_dir, folder=True)  # no symlink out of the run folder
        for name in self.restored:
            self._writer(name)  # cut back to the checkpoint's length now
        if self.write_graph and "train" not in self.restored:  # (a continued file has it)
            self._write_graph()

    def on_batch_end(self, batch, logs=None):
        self.step += 1
        every = 1 if self.update_freq == "batch" else self.update_freq
        if every == "epoch" or self.step % every:
            return
        w = self._writer("train")
        for k, v in (logs or {}).items():
            if k not in SKIP and isinstance(v, (int, float)):
                w.add_summary(scalar(f"batch_{k}", float(v)), self.step)
        w.flush()

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            if k in SKIP or not isinstance(v, (int, float)):
                continue
            name, tag = ("validation", k[4:]) if k.startswith("val_") else ("train", k)
            self._writer(name).add_summary(scalar(f"epoch_{tag}", float(v)), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_weights(epoch)
        for w in self._writers.values():
            w.flush()

    def _write_weights(self, epoch):
        w = self._writer("train")
        for layer in self.model.layers:
            for name, value in zip(layer.weight_names(), layer.get_weights()):
                tag = f"{layer.name}/{name}_0"
                w.add_summary(histogram(tag, np.asarray(value, np.float64), BINS), epoch)
                if self.write_images:
                    pixels = weight_image(value)
                    if pixels is not None:
                        w.add_summary(image(tag, pixels, dataformats="NHWC"), epoch)

    def _write_graph(self):
        from tensorboardX.proto import event_pb2, graph_pb2, node_def_pb2

        g = self.model.graph
        names = list(g.input_names)
        seen = {}
        nodes = [node_def_pb2.NodeDef(name=n, op="Input") for n in names]
        for node in g.nodes:
            base = node.layer.name
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}_call{seen[base]}"
            nodes.append(node_def_pb2.NodeDef(name=name, op=type(node.layer).__name__,
                                              input=[names[i] for i in node.inputs]))
            names += [name] + [f"{name}:{k}" for k in range(1, len(node.outputs))]
        graph = graph_pb2.GraphDef(node=nodes)
        writer = self._writer("train")
        writer.write(event_pb2.Event(graph_def=graph.SerializeToString()))
        writer.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def get_state(self):
        return {"step": self.step, "log_dir": self.log_dir,
                "bytes": {name: w.length() for name, w in self._writers.items()}}

    def set_state(self, state):
        self.step = int(state["step"])
        if state.get("log_dir") == self.log_dir:
            self.restored = {name: int(n) for name, n in state.get("bytes", {}).items()}


def _started(run):
    """The run's start (seconds since the epoch) names its event files: the same name
    for every resume of the run. Now, without a run."""
    import time
    from datetime import datetime

    started = (run.meta or {}).get("started") if run is not None else None
    try:
        return datetime.fromisoformat(started).timestamp()
    except (TypeError, ValueError):
        return time.time()


def scalar(tag, value):
    from tensorboardX.summary import scalar as make

    return make(tag, value)


def histogram(tag, values, bins):
    from tensorboardX.summary import histogram as make

    return make(tag, values, bins)


def image(tag, pixels, dataformats):
    from tensorboardX.summary import image as make

    return make(tag, pixels, dataformats=dataformats)


def weight_image(value):
    """A weight as a batch of grey images (N, H, W, 1) scaled to 0..1, as Keras 2."""
    w = np.squeeze(np.asarray(value, np.float64))
    if w.ndim == 2:
        w = w.T if w.shape[0] > w.shape[1] else w
        w = w.reshape(1, *w.shape, 1)
    elif w.ndim == 3:
        w = np.transpose(w, (2, 0, 1))[..., None]
    elif w.ndim == 1:
        w = w.reshape(1, w.shape[0], 1, 1)
    else:
        return None
    lo, hi = float(w.min()), float(w.max())
    return (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)
