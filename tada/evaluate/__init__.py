"""Evaluation of steering methods: sweeps, scores, calibration and the paper's tables.

The maths of the tables (δ, cutoff, AUC, smoothness, quality, averages, relative gain,
multi-concept AUC) is in :mod:`tada.evaluate.protocol`; :mod:`tada.evaluate.tables` reads a
per-alpha CSV and writes the tables. Nothing heavy is imported here.
"""
