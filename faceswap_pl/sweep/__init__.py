"""Hyper-parameter sweeps with Optuna and MLflow (run by `faceswap-pl sweep run|report`).

Design: the launcher creates the Optuna study (journal file on one host, an RDB URL across hosts),
the MLflow experiment and one parent run, then starts one worker process per GPU
(``CUDA_VISIBLE_DEVICES``) or N CPU workers, each with its own sampler seed and share of the CPU threads.
A worker trains each trial -- each seed of a configuration -- as a ``python -m faceswap_pl.cli fit``
subprocess (crash isolation; a killed trial becomes FAIL and is retried), as an MLflow child run, and
prunes from the evaluation metric reported at each evaluation.
"""

from faceswap_pl.sweep.spec import SweepSpec, load_spec, validate_spec

__all__ = ["SweepSpec", "load_spec", "validate_spec"]
