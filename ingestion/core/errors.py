"""The one error type the CLI shows without a traceback."""


class SitelineError(Exception):
    """An expected failure with a message that names the problem and the fix.

    The CLI prints these as one line and exits non-zero; anything else is a bug and keeps
    its traceback.
    """
