"""PLADA edge builder: the workstation side (PyTorch)."""
