"""Classical baselines every comparison includes (MFCC statistics + scikit-learn classifiers)."""

from reprogram.baselines.mfcc import (
    CLASSIFIERS,
    METRICS,
    evaluate_mfcc_baseline,
    make_classifier,
    mfcc_features,
    table_features,
)

__all__ = ["CLASSIFIERS", "METRICS", "evaluate_mfcc_baseline", "make_classifier", "mfcc_features", "table_features"]
