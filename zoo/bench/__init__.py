"""Benchmarks: ``zoo bench <name>`` runs ``zoo.bench.<name>.main``.

:mod:`zoo.bench.timing` holds the shared method (compile excluded, warm-up,
synchronised calls, rotated inputs, median with spread) and the environment
description every results table carries. Modules are imported lazily by the
command line, so this package imports nothing heavy.
"""
