"""The config language: loading (YAML with line/column, --set), the JSON Schema, the
registry of component families and user code (``module:attr``).

Kept empty: the components import ``trainer.config.registry`` and
``trainer.config.families`` to register themselves, and must not pull in the loader."""
