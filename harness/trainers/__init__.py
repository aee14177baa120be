"""Trainers: compute only. A trainer runs epochs and evaluations and returns numbers per
member; it knows no sink, no Optuna and no trial book."""
