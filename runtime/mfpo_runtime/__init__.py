"""The MFPO data plane: storage, data generation, training and evaluation.

Importing this package imports no torch; the heavy modules load it themselves.
"""
