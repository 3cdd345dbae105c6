"""The registries of every component family users name in a config."""

from trainer.config.registry import Registry

layers = Registry("layer", "trainer.layers")
activations = Registry("activation", "trainer.activations")
initializers = Registry("initializer", "trainer.initializers")
regularizers = Registry("regularizer", "trainer.regularizers")
losses = Registry("loss", "trainer.losses")
metrics = Registry("metric", "trainer.metrics")
optimizers = Registry("optimizer", "trainer.optimizers")
schedules = Registry("schedule", "trainer.schedules")
callbacks = Registry("callback", "trainer.callbacks")
preprocessing = Registry("preprocessing step", "trainer.data.preprocessing")
datasets = Registry("dataset", "trainer.datasets")
#: Keras's pretrained application families (not in ALL: a model section, not a component)
applications = Registry("application", "trainer.applications")

layers.unsupported["Lambda"] = (
    "Lambda is not supported: a config holds no code. Write the function as a custom "
    "layer, a subclass of trainer.engine.layer.Layer in a module next to the config, "
    "and name it in the layer list: {layer: \"my_layers:Double\", args: {...}}; for "
    "code that runs during training (logging, side effects) use a user callback: "
    "{callback: \"my_hooks:Notify\"}, or LambdaCallback: {on_epoch_end: "
    "\"my_hooks:plot_loss\"}. See \"Custom layers\" in the README.")

# the user's own components, {loss: "my_losses:FocalLoss", args: {...}} (layers and
# callbacks have their own entries, see trainer.config.usercode)
initializers.user_code("initializer", "trainer.initializers.user")
regularizers.user_code("regularizer", "trainer.regularizers.user")
losses.user_code("loss", "trainer.losses.user")
metrics.user_code("metric", "trainer.metrics.user")
schedules.user_code("schedule", "trainer.schedules.user")
preprocessing.user_code("step", "trainer.data.preprocessing.user")

ALL = {
    r.kind: r
    for r in (
        layers, activations, initializers, regularizers, losses, metrics,
        optimizers, schedules, callbacks, preprocessing, datasets,
    )
}
