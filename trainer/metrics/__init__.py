"""Metrics by Keras 2 name; every loss is usable as a metric too."""

from trainer.errors import ConfigError
from trainer.config.families import losses, metrics


def get(spec, loss=None, output_units=None):
    """A metric from its config. ``accuracy``/``acc`` resolve from the loss (a name or
    instance) and the output width as Keras 2 does; a loss name gives the mean of that
    loss (metric names win where a name is both, e.g. ``cosine_similarity``)."""
    from trainer.metrics.accuracy import resolve_accuracy
    from trainer.metrics.base import LossMetric
    from trainer.config.registry import split_spec

    if isinstance(spec, dict) and "metric" in spec:  # {metric: "module:Name", args}
        return metrics.get(spec)
    name, _ = split_spec(spec) if isinstance(spec, (str, dict)) else (None, None)
    if name in ("accuracy", "acc"):
        return resolve_accuracy(loss, output_units)
    if name is not None and name not in metrics and name in losses:
        return LossMetric(losses.get(spec), name=name)
    metric = metrics.get(spec)
    class_id = getattr(metric, "class_id", None)
    if class_id is not None and output_units is not None and class_id >= output_units:
        raise ConfigError(f"metric {name}: class_id {class_id} is out of range for an "
                          f"output of {output_units} units")
    return metric


def logged_name(name):
    """The name Keras logs for a metric given as ``name``: a class name (``AUC``,
    ``RootMeanSquaredError``, ``MeanSquaredError``) logs its instance's default name
    (``auc``, ``root_mean_squared_error``, ``mean_squared_error``); any other string
    (``mse``, ``acc``) as written."""
    from trainer.engine.layer import snake_case

    if not name[:1].isupper():
        return name
    registry = metrics if name in metrics else losses if name in losses else None
    canonical = registry.canonical(name) if registry is not None else name
    return canonical if not canonical[:1].isupper() else snake_case(canonical)
