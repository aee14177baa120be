"""What a sweep leaves: trials.csv and history.csv written from the study and read back
(directory, bookkeeping, export), and the comparisons built on them (tables, slices,
bins, importance, summary, report); the statistics are harness/stats.py's."""
