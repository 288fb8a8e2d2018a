"""The ANN engine: clustering, IVF, routing, training and evaluation.

Knows nothing of HTTP or SQL, so it can be tested and benchmarked on its own.
"""
