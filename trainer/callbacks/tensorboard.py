"""TensorBoard: event files the real TensorBoard reads, laid out as Keras 2 writes them.

``<log_dir>/train/`` holds ``epoch_<name>`` scalars of the training logs (``epoch_loss``,
``epoch_accuracy``, ``epoch_lr``), ``batch_<name>`` scalars when ``update_freq`` asks,
weight histograms (``dense/kernel_0``), weight images and the layer graph;
``<log_dir>/validation/`` holds the ``val_`` values under the same ``epoch_<name>`` tags.
Written with tensorboardX (``pip install 'trainer[tensorboard]'``).
"""

from typing import Literal, Union

import numpy as np

from trainer.callbacks.base import Callback, check_relative, inside_run
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

    def _writer(self, name):
        if name not in self._writers:
            from tensorboardX import SummaryWriter
            folder = inside_run(self, self.log_dir) / name
            self._writers[name] = SummaryWriter(logdir=str(folder), flush_secs=5)
        return self._writers[name]

    def on_train_begin(self, logs=None):
        inside_run(self, self.log_dir)  # no symlink out of the run folder, before training
        if self.write_graph:
            self._write_graph()

    def on_batch_end(self, batch, logs=None):
        self.step += 1
        every = 1 if self.update_freq == "batch" else self.update_freq
        if every == "epoch" or self.step % every:
            return
        w = self._writer("train")
        for k, v in (logs or {}).items():
            if k not in SKIP and isinstance(v, (int, float)):
                w.add_scalar(f"batch_{k}", float(v), self.step)

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            if k in SKIP or not isinstance(v, (int, float)):
                continue
            if k.startswith("val_"):
                self._writer("validation").add_scalar(f"epoch_{k[4:]}", float(v), epoch)
            else:
                self._writer("train").add_scalar(f"epoch_{k}", float(v), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_weights(epoch)
        for w in self._writers.values():
            w.flush()

    def _write_weights(self, epoch):
        w = self._writer("train")
        for layer in self.model.layers:
            for name, value in zip(layer.weight_names(), layer.get_weights()):
                tag = f"{layer.name}/{name}_0"
                w.add_histogram(tag, np.asarray(value, np.float64), epoch)
                if self.write_images:
                    image = weight_image(value)
                    if image is not None:
                        w.add_images(tag, image, epoch, dataformats="NHWC")

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
        writer._get_file_writer().add_event(
            event_pb2.Event(graph_def=graph.SerializeToString()))
        writer.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def get_state(self):
        return {"step": self.step}

    def set_state(self, state):
        self.step = int(state["step"])


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
