"""The data flags of the commands, in groups each command takes as it needs them: the record
files, the normalisation, the training augmentation."""
import argparse

from alexnet_mxnet.base.argtypes import NON_NEGATIVE, POSITIVE_INT, bounded, rgb_mean, rgb_std
from alexnet_mxnet.base.errors import UsageError
from iterators.normalize import MEAN_RGB, STD_RGB
from iterators.record import ASPECT_RATIO, RANDOM_AREA

TRAIN_HELP = 'training .rec file (its .idx beside it)'
VAL_HELP = 'validation .rec file (its .idx beside it); none: no validation'


def add_data_args(parser, train=TRAIN_HELP, val=VAL_HELP, threads=True):
    """``--data-train`` and ``--data-val`` with the given help (None: the command has no such
    flag) and ``--data-nthreads``."""
    group = parser.add_argument_group('data')
    if train:
        group.add_argument('--data-train', metavar='REC', default=None, help=train)
    if val:
        group.add_argument('--data-val', metavar='REC', default=None, help=val)
    if threads:
        group.add_argument('--data-nthreads', type=POSITIVE_INT, default=None, metavar='N',
                           help='decoding/augmentation threads (default: all cores)')
    return group


def add_normalize_args(parser, from_checkpoint=False):
    """``--rgb-mean`` and ``--rgb-std``; with ``from_checkpoint``, a flag left out means "as
    the checkpoint's sidecar says"."""
    group = parser.add_argument_group('normalisation')
    group.add_argument('--rgb-mean', type=rgb_mean, default=None if from_checkpoint else MEAN_RGB,
                       metavar='R,G,B',
                       help='per-channel mean subtracted from 0..255 pixels (default: %s)'
                            % ("the checkpoint's sidecar" if from_checkpoint
                               else ','.join(map(str, MEAN_RGB))))
    group.add_argument('--rgb-std', type=rgb_std, default=None, metavar='R,G,B',
                       help='per-channel std to divide by after the mean, e.g. %s (default: %s)'
                            % (','.join(map(str, STD_RGB)),
                               "the checkpoint's sidecar; without one it must be given, and 1,1,1 "
                               "means none" if from_checkpoint else 'none, as in AlexNet'))
    return group


def add_augment_args(parser):
    """The training augmentation: ``--pca-noise``, ``--color-jitter``,
    ``--random-resized-crop``."""
    group = parser.add_argument_group('augmentation (training)')
    group.add_argument('--pca-noise', type=NON_NEGATIVE, default=0.1,
                       help='std of AlexNet\'s PCA lighting noise; 0 turns it off '
                            '(default: %(default)s)')
    group.add_argument('--color-jitter', type=bounded(float, 0, 1), default=0.0,
                       help='random brightness, contrast and saturation change in [-x, x] '
                            '(default: %(default)s, off)')
    group.add_argument('--random-resized-crop', action='store_true',
                       help='crop a random area of the image (--rrc-scale) at a random aspect '
                            '(--rrc-ratio) and resize it to the input size, instead of a plain '
                            'random crop of the stored image')
    group.add_argument('--rrc-scale', type=number_range(0, 1), default=None, metavar='LO,HI',
                       help='with --random-resized-crop: the range of the crop\'s share of the '
                            'image area (default: %s)' % _pair(RANDOM_AREA))
    group.add_argument('--rrc-ratio', type=number_range(0), default=None, metavar='LO,HI',
                       help='with --random-resized-crop: the range of the crop\'s aspect ratio, '
                            'width/height (default: %s)' % _pair(ASPECT_RATIO))
    group.add_argument('--random-erasing', type=bounded(float, 0, 1), default=0.0, metavar='P',
                       help='replace one random rectangle (2-33%% of the area, aspect 0.3-3.3) '
                            'of each training image, with probability P, by Gaussian noise with '
                            'the spread of real pixels, after normalisation (timm\'s random '
                            'erasing; default: %(default)s, off)')
    return group


def _pair(values):
    return ','.join('%.4g' % v for v in values)


def number_range(low, high=None):
    """argparse ``type=``: ``LO,HI``, two numbers with ``low < LO <= HI`` (``<= high``)."""
    each = bounded(float, low, high, low_open=True)

    def parse(text):
        parts = text.split(',')
        if len(parts) != 2:
            raise argparse.ArgumentTypeError('must be two numbers LO,HI, got %r' % text)
        values = tuple(each(part) for part in parts)
        if values[0] > values[1]:
            raise argparse.ArgumentTypeError('LO must not exceed HI, got %r' % text)
        return values
    return parse


def check_augment_args(args):
    """What the augmentation flags cannot be given alone."""
    if (args.rrc_scale or args.rrc_ratio) and not args.random_resized_crop:
        raise UsageError('--rrc-scale and --rrc-ratio set the random-resized crop: add '
                         '--random-resized-crop')


def data_iter_kwargs(args):
    """The ``get_rec_iters`` keyword arguments that the data, normalisation and augmentation
    flags set."""
    check_augment_args(args)
    return dict(mean_rgb=args.rgb_mean, std_rgb=args.rgb_std, pca_noise=args.pca_noise,
                color_jitter=args.color_jitter, random_resized_crop=args.random_resized_crop,
                random_area=args.rrc_scale or RANDOM_AREA,
                aspect_ratio=args.rrc_ratio or ASPECT_RATIO,
                random_erasing=args.random_erasing, num_threads=args.data_nthreads)
