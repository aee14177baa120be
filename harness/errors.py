"""The errors that mean bad input (exit 2). Each problem is one line that names what was
wrong, where, and how to fix it. Kept free of heavy imports, so that the command line
reports bad input without loading torch."""

from __future__ import annotations

MAX_LINES = 20  # a config with more problems shows the first ones and how many more


class ConfigError(ValueError):
    """Bad input: one line per problem, each naming the field, the value and the fix."""

    def __init__(self, *lines: str) -> None:
        if len(lines) > MAX_LINES:
            more = len(lines) - MAX_LINES + 1
            lines = (*lines[:MAX_LINES - 1], f"... and {more} more problems; fix these "
                     "and run again to see the rest")
        self.lines = list(lines)
        super().__init__("\n".join(lines))

    def prefixed(self, prefix: str) -> ConfigError:
        """The same problems, each line starting with `prefix` (the file's name)."""
        return ConfigError(*(prefix + line for line in self.lines))


class DataError(RuntimeError):
    """The data set cannot be had; the message says where to put it."""
