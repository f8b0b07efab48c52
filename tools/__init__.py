"""Developer drivers: the demo, `make builder`, encoder benchmarks and the development broker.

They may import both builder and agent; the product packages (plada, builder, agent) never import
them.
"""
