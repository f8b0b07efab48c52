"""Workstation encoders: the PyTorch teacher, ONNX runs of device exports, and the exports."""
