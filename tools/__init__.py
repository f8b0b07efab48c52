"""Developer drivers: field trials, measurements and other tools that drive builder and agent.

``tools`` may import ``plada``, ``builder`` and ``agent``; the product packages never import
``tools`` (tests/unit/test_layout.py checks it). Nothing here is installed with the product.
"""
