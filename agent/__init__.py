"""PLADA edge agent: the device side. Never imports torch."""
