"""The one exception type for mistakes a user can make (bad flags, bad files).

It subclasses ``ValueError`` so library callers can catch it as such; the CLIs
print it as a single line and exit with status 2 instead of a traceback.
"""


class UsageError(ValueError):
    """A problem with the user's input, explained in one line."""
