"""The tiny environment of tools/tiny-env: tiny checkpoints built from the hub's own files, and its start-up code."""
