"""A built model → ONNX: a format library beside keras_io.

It reads a built Model (its Graph and layer objects) and writes an ONNX file
(opset ``OPSET``, float32, a dynamic batch axis, the model's input and output names),
checked by ``onnx.checker`` with full shape inference before it is written atomically.
It imports nothing above the components (no CLI, no api, no run folders) but the
project's atomic-write helper.

- ``graph.py``      the walk over the model's graph, metadata, the check, the write
- ``context.py``    the ONNX graph being built (nodes named after the Keras layers)
- ``registry.py``   layer class → converter, activation class → converter
- ``preprocess.py`` the run's preprocessing steps as ONNX ops in front of the graph
- one file per layer family: ``activations``, ``core``, ``conv``, ``pooling``,
  ``normalization``, ``reshaping``, ``merge``, ``embedding``, ``recurrent`` (Scan) and
  ``recurrent_ops`` (ONNX's RNN/LSTM/GRU), ``wrappers``, ``attention``,
  ``preprocessing_layers``
"""

from trainer.onnx_io.graph import OPSET, export_model, refuse_unsupported, unsupported_layers

__all__ = ["OPSET", "export_model", "refuse_unsupported", "unsupported_layers"]
