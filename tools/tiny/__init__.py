"""Tiny real devices for tests and the soak: a corpus of coloured shapes, a seeded linear
encoder exported like `plada-build export-encoder` writes, and helpers that damage a corpus image
in place (and repair it)."""
