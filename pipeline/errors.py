"""Error types that the CLI maps to exit codes: bad input is the caller's to fix (exit 2)."""


class BadInput(ValueError):
    """Input that cannot be used as given: a bad file, option value or checkpoint."""
