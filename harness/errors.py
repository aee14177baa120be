"""The errors that mean bad input (exit 2). Each message is one line that names what was
wrong, where, and how to fix it. Kept free of heavy imports, so that the command line
reports bad input without loading torch."""


class ConfigError(ValueError):
    """Bad input: the message is one line naming the field, the value and the fix."""


class DataError(RuntimeError):
    """The data set cannot be had; the message says where to put it."""
