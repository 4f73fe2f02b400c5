"""The one exception type for user errors (bad data, bad settings, bad files)."""


class DebiasclError(Exception):
    """A user error: the message names the file or setting and what was expected.

    The CLI prints it on one line and exits with status 2, without a traceback.
    """
