"""The story's measurements, each a command that trains and measures small models.

* :mod:`~zoo.experiments.ladder`: ``zoo ladder``, the language-model ladder
  (Kneser-Ney n-gram, recurrent LMs, GPT) in bits per character;
* :mod:`~zoo.experiments.gradflow`: ``zoo gradflow``, vanishing and exploding
  gradients against the lag;
* :mod:`~zoo.experiments.tasks`: ``zoo tasks``, long-range dependency tasks
  (the generators are :mod:`zoo.data.long_range`).

Each is an :class:`~zoo.harness.main.Experiment` of the harness (flags, run,
``render(results)``, files in ``--out``); training goes through
:mod:`zoo.train` (the trainer, or :func:`zoo.train.fit`).
"""
