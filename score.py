"""Score a checkpoint on a .rec file: top-1/top-5 on the center crop or 10 crops, per-class
accuracy, confusion matrix (CSV + PNG), images/s.

    python score.py --model-prefix checkpoints/alexnet --epoch 30 --data-val data/val.rec
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import json  # noqa: E402
import sys  # noqa: E402

from engine.args import add_device_args  # noqa: E402
from engine.cli import OneLineErrorParser, add_network_args, run_cli  # noqa: E402
from engine.devices import get_contexts  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from inference import fastpath, model, scoring  # noqa: E402
from iterators import add_data_args  # noqa: E402


def build_parser():
    parser = OneLineErrorParser(
        description='Score a checkpoint on a .rec file. Image shape, mean/std and class names '
                    'come from the checkpoint\'s sidecar P-meta.json unless given as flags.')
    model.add_checkpoint_args(parser)
    add_data_args(parser)
    add_network_args(parser)
    add_device_args(parser)
    fastpath.add_precision_args(parser)
    fastpath.add_calibration_args(parser)
    group = parser.add_argument_group('scoring')
    group.add_argument('--batch-size', type=int, default=32,
                       help='images per batch (x10 rows with --ten-crop) (default: %(default)s)')
    group.add_argument('--ten-crop', action='store_true',
                       help='average the softmax over the 4 corner + center crops and their '
                            'mirrors (the AlexNet paper\'s test protocol)')
    group.add_argument('--out-dir', default=None,
                       help='where the confusion matrix CSV/PNG and per-class CSV go '
                            '(default: beside the checkpoint)')
    group.add_argument('--json', action='store_true',
                       help='print the results as one JSON object instead of the text report')
    group.add_argument('--no-progress', dest='progress', action='store_false',
                       help='no progress bar')
    model.adapt_shared_flags(parser, data_train_help='--precision int8 only: .rec to calibrate on '
                             '(normally the training .rec)')
    return parser


def output_paths(loaded, args):
    """``{kind: path}`` of the files written beside the checkpoint (or in --out-dir)."""
    stem = os.path.basename(loaded.name) + ('-10crop' if args.ten_crop else '') + \
        ('' if args.precision == 'float32' else '-' + args.precision)
    folder = args.out_dir or os.path.dirname(os.path.abspath(loaded.name))
    return {kind: os.path.join(folder, stem + suffix) for kind, suffix in (
        ('confusion_csv', '-confusion.csv'), ('confusion_png', '-confusion.png'),
        ('per_class_csv', '-per-class.csv'))}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.data_val:
        raise UsageError('give the .rec to score with --data-val REC')
    if args.batch_size < 1:
        raise UsageError('--batch-size must be positive, got %d' % args.batch_size)
    contexts = get_contexts(args.gpus, args.cpus)
    fastpath.check_precision(args.precision, contexts, args.dtype)
    loaded = model.load_from_args(args)
    result = scoring.score(loaded, args.data_val, args.batch_size, contexts,
                           ten_crop=args.ten_crop, precision=args.precision,
                           calib_rec=args.data_train, num_calib_examples=args.num_calib_examples,
                           calib_mode=args.calib_mode, num_threads=args.data_nthreads,
                           progress=args.progress)
    paths = output_paths(loaded, args)
    matrix = result.confusion()
    scoring.write_confusion_csv(paths['confusion_csv'], matrix, result.class_names)
    scoring.write_per_class_csv(paths['per_class_csv'], result.per_class())
    scoring.plot_confusion(paths['confusion_png'], matrix, result.class_names,
                           '%s: top-1 %.3f on %d images' % (os.path.basename(loaded.name),
                                                           result.accuracy(1), result.num_images))
    if args.json:
        json.dump(dict(result.summary(), files=paths), sys.stdout, indent=2)
        print()
    else:
        print(scoring.format_report(result))
        for path in paths.values():
            print('wrote', path)
    return result


def cli():
    """Console-script entry point (setup.py)."""
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
