"""The Optuna study of a sweep: which points run (search), who runs each one (owner,
locks, workers), and where the study lives (storage)."""
