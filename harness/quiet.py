"""What harness lets its dependencies print, set by the CLI (and by each --workers child,
which may be a new interpreter) when a command starts, never at import: a program that
calls run_sweep keeps its own logging set-up."""

from __future__ import annotations

import warnings


def quiet_dependencies() -> None:
    """Optuna says warnings only: its line per trial repeats our progress lines. Its
    heartbeat API is marked experimental and meant for optimize(); the claim loop uses it
    as documented, so those warnings say nothing to a user."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
