"""Serendip core: data schema, interest taxonomy, sequence model, item index, artifact bundles."""

__version__ = "0.1.0"
