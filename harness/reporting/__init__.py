"""What a sweep leaves: trials.csv and history.csv written from the study and read back
(directory, bookkeeping, export), and the comparisons built on them (tables, slices,
stats, importance, summary, report)."""
