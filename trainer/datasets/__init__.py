"""Built-in datasets that need no network."""
