"""Developer drivers: the demo, `make builder`, encoder benchmarks, the development broker, and
field trials over emulated thin links (`tools/trial/`).

They may import both builder and agent; the product packages (plada, builder, agent) never import
them.
"""
