"""Running experiments: config -> runner -> training loop -> results -> statistics; sweeps, suites and the demo.

One ``reprogram run`` walks, in order: :mod:`~reprogram.experiment.config` (resolve the YAML + overrides),
:mod:`~reprogram.experiment.inputs` (load the table, split it, build datasets over the decoded clips),
:mod:`reprogram.methods` (build the method; it brings its own way to be trained or fitted),
:mod:`~reprogram.experiment.train` (the one training loop, for torch methods), and
:mod:`~reprogram.experiment.results` (one ``result.json`` per run). :mod:`~reprogram.experiment.stats` and
``figures/`` read the result files only.
"""
