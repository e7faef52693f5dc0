"""Runtime plumbing that changes how fast a run goes, never what it measures: caches of decoded clips and frozen
features (:mod:`~reprogram.runtime.cache`), the frozen-prefix cache (:mod:`~reprogram.runtime.prefix`), threads
and loaders, accelerator options and data-parallel training."""
