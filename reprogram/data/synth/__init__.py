"""The synthetic gibbon corpus, split by concern: config, calls, backgrounds, corpus writing, cache.

Import the public API from :mod:`reprogram.data.synthetic`.
"""
