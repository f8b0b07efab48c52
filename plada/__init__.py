"""PLADA edge shared core: what the builder and every device must agree on.

No torch, paho or onnxruntime here: this package runs on a Raspberry Pi beside the agent.
"""

__version__ = "0.1.0"
