"""The one exception type for mistakes a user can make (bad flags, bad files).

It subclasses ``ValueError`` so library callers can catch it as such; the CLIs
print it as a single line and exit with status 2 instead of a traceback.
"""


class UsageError(ValueError):
    """A problem with the user's input, explained in one line."""


def mxnet_error_line(err):
    """The line of an ``MXNetError`` that says what failed (its message is a C++ traceback)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if 'Check failed' in line or 'Error' in line]
    return (useful or lines or ['unknown MXNet error'])[0][:300].replace('MXNetError: ', '')
