"""The one exception type for mistakes a user can make (bad path, bad file, bad option)."""


class PcalError(Exception):
    """A user-caused error: the CLI prints its message on one line and exits with code 2."""


def did_you_mean(name: str, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to a mistyped ``name`` (else ``""``)."""
    import difflib

    close = difflib.get_close_matches(str(name).strip().lower(), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
