"""A complete tiny device (generated corpus of shapes, a tiny ONNX encoder, keys, an agent config
and a payload factory), for the tests, the soak and trials that run a real agent in seconds.

    corpus   the generated corpus with a known class structure
    encoder  a tiny ONNX encoder with a sidecar, as the exporter writes them
    device   make_device(): all of it under one folder, and signed payloads for it
    damage   damage a corpus image in place (and repair it), PNGs that declare more pixels
"""
