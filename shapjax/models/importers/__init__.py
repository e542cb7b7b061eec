"""Importers: other frameworks' checkpoints as :class:`shapjax.models.Classifier` (placeholder)."""
