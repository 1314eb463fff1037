"""The one exception type for mistakes a user can make (bad path, bad file, bad option)."""


class PcalError(Exception):
    """A user-caused error: the CLI prints its message on one line and exits with code 2."""
