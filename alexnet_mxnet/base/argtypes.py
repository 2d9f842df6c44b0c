"""Parsers of flag values, used as argparse ``type=`` beside the flags they check: a bad value
is one line while the flags are parsed (``--lr nan`` would otherwise train until the first
NaN loss), before any work. The plain parsers raise ``UsageError`` for values that come from
elsewhere (a sidecar, a keyword argument)."""
import argparse
import math

from alexnet_mxnet.base.errors import UsageError


def bounded(kind=float, low=None, high=None, *, low_open=False, high_open=False):
    """A finite number (``kind``: float or int) in a range."""
    if low is not None and high is None:
        wanted = '%s %s %s' % ('a number' if kind is float else 'a whole number',
                               '>' if low_open else '>=', low)
    else:
        wanted = 'a number in %s%s, %s%s' % ('(' if low_open else '[', low,
                                             high, ')' if high_open else ']')

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (
                low is not None and (value < low or (low_open and value == low))) or (
                high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError('must be %s, got %r' % (wanted, text))
        return value
    return parse


POSITIVE_INT = bounded(int, 1)
NON_NEGATIVE_INT = bounded(int, 0)
POSITIVE = bounded(float, 0, low_open=True)
NON_NEGATIVE = bounded(float, 0)
FRACTION = bounded(float, 0, 1, high_open=True)    # [0, 1): momentum, dropout, ratios


def _flag_type(parse):
    """argparse ``type=`` from a parser that raises ``UsageError``."""
    def parse_flag(text):
        try:
            return parse(text)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse_flag.__name__ = parse.__name__
    return parse_flag


def parse_image_shape(value):
    """``'3,227,227'`` (or a sequence) -> ``(3, 227, 227)``; a one-line error for anything
    else. Accepts what MXNet's example scripts pass: a comma-separated string."""
    try:
        parts = value.split(',') if isinstance(value, str) else list(value)
        shape = tuple(int(v) for v in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError('image shape must be three positive integers C,H,W, got %r' % (value,))
    return shape


def parse_rgb(values, what='values', positive=False):
    """Three numbers R,G,B (a sequence or ``'R,G,B'``) as a tuple of floats."""
    try:
        parts = values.split(',') if isinstance(values, str) else list(values)
        numbers = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise UsageError('RGB %s must be three numbers R,G,B, got %r' % (what, values))
    if positive and min(numbers) <= 0:
        raise UsageError('RGB %s must be positive, got %s' % (what, ','.join(map(str, numbers))))
    return numbers


def parse_int_list(text):
    """``'32,128'`` -> ``[32, 128]``: positive integers."""
    try:
        values = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError('expected comma-separated positive integers, got %r' % (text,))
    return values


image_shape = _flag_type(parse_image_shape)
rgb_mean = _flag_type(lambda text: parse_rgb(text, 'mean'))
rgb_std = _flag_type(lambda text: parse_rgb(text, 'std', positive=True))
int_list = _flag_type(parse_int_list)
