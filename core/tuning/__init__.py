"""Hyperparameter search (`tl tune`) on Optuna: a study whose trials are `tl run` directories.

`tune.tune_plugin` drives it; `space` (search spaces and ``--space`` files), `study`
(storage, sampler, pruner), `objective` (one trial = one `tl run`), `pruning` (the trainer
callback feeding the pruner) and `report` (trials.csv, best/, report.md) are its parts.
Imports Optuna: load it only for `tl tune`.
"""

from __future__ import annotations

from .space import SearchSpace, parse_space, read_space
from .tune import TuneOptions, tune_plugin

__all__ = ["SearchSpace", "TuneOptions", "parse_space", "read_space", "tune_plugin"]
