"""The story's measurements, each a command that trains and measures small models.

* :mod:`~zoo.experiments.ladder`: ``zoo ladder``, the language-model ladder
  (Kneser-Ney n-gram, recurrent LMs, GPT) in bits per character;
* :mod:`~zoo.experiments.gradflow`: ``zoo gradflow``, vanishing and exploding
  gradients against the lag;
* :mod:`~zoo.experiments.tasks`: ``zoo tasks``, long-range dependency tasks
  (the generators are :mod:`zoo.data.long_range`).
"""
