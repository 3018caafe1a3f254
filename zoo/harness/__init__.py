"""The harness of zoo's benchmarks and experiments: how a measurement is run, timed, isolated and reported.

A layer of its own, below the commands, the experiments and the benchmarks
(which all use it) and above the run level (presets, registry); it imports
none of them.

* :mod:`~zoo.harness.flags`: config dataclasses from the command line (tyro),
  presets, ``--quick`` and checks: the one way a config is resolved;
* :mod:`~zoo.harness.timing`: the timing method (compile excluded, warm-up,
  synchronised calls, rotated inputs, median with spread);
* :mod:`~zoo.harness.worker`: measurements in worker processes (memory
  limit, peak memory, out-of-memory and timeouts as results);
* :mod:`~zoo.harness.results`: the environment, the report's header and
  tables, JSON;
* :mod:`~zoo.harness.main`: the command every benchmark and experiment is
  (flags, run, Markdown report, JSON/Markdown/CSV/plots in ``--out``).

Submodules are imported on use: this package imports nothing heavy.
"""
