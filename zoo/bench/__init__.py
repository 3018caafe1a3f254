"""Benchmarks: ``zoo bench <name>`` runs ``zoo.bench.<name>.main``.

Each module is an :class:`~zoo.harness.main.Experiment` of the harness
(:mod:`zoo.harness`: the timing method, worker processes, the report's
header and files). Modules are imported lazily by the command line, so this
package imports nothing heavy.
"""
