"""The data flags every training/scoring CLI shares, and their translation to iterator kwargs."""
import argparse
import math

from engine.errors import UsageError
from iterators.normalize import MEAN_RGB, STD_RGB, check_mean_std


def rgb_triple(text):
    """argparse type for ``R,G,B``."""
    try:
        return check_mean_std(text.split(','), None)[0]
    except UsageError:
        raise argparse.ArgumentTypeError('expected three numbers R,G,B, got %r' % text) from None


def bounded(kind=float, low=None, high=None, *, low_open=False, high_open=False):
    """argparse ``type=`` for a finite number (``kind``: float or int) in a range: a bad value
    is refused while the flags are parsed, before any work (``--lr nan`` would otherwise
    train until the first loss is NaN)."""
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
NON_NEGATIVE = bounded(float, 0)


def add_data_args(parser):
    """``--data-train``, ``--data-val``, ``--data-nthreads``, ``--rgb-mean``, ``--rgb-std``,
    ``--pca-noise``, ``--color-jitter``, ``--random-resized-crop``."""
    group = parser.add_argument_group('data')
    group.add_argument('--data-train', metavar='REC', default=None,
                       help='training .rec file (its .idx beside it)')
    group.add_argument('--data-val', metavar='REC', default=None,
                       help='validation .rec file (its .idx beside it); none: no validation')
    group.add_argument('--data-nthreads', type=POSITIVE_INT, default=None, metavar='N',
                       help='decoding/augmentation threads (default: all cores)')
    group.add_argument('--rgb-mean', type=rgb_triple, default=MEAN_RGB, metavar='R,G,B',
                       help='per-channel mean subtracted from 0..255 pixels (default: %s)'
                            % ','.join(map(str, MEAN_RGB)))
    group.add_argument('--rgb-std', type=rgb_triple, default=None, metavar='R,G,B',
                       help='per-channel std to divide by after the mean, e.g. %s '
                            '(default: none, as in AlexNet)' % ','.join(map(str, STD_RGB)))
    group.add_argument('--pca-noise', type=NON_NEGATIVE, default=0.1,
                       help='std of AlexNet\'s PCA lighting noise; 0 turns it off '
                            '(default: %(default)s)')
    group.add_argument('--color-jitter', type=bounded(float, 0, 1), default=0.0,
                       help='random brightness, contrast and saturation change in [-x, x] '
                            '(default: %(default)s, off)')
    group.add_argument('--random-resized-crop', action='store_true',
                       help='crop a random 8-100%% area at aspect 3/4-4/3 and resize it, instead '
                            'of a plain random crop of the stored image')
    return group


def data_iter_kwargs(args):
    """The ``get_rec_iters`` keyword arguments that ``add_data_args`` flags set."""
    return dict(mean_rgb=args.rgb_mean, std_rgb=args.rgb_std, pca_noise=args.pca_noise,
                color_jitter=args.color_jitter, random_resized_crop=args.random_resized_crop,
                num_threads=args.data_nthreads)
