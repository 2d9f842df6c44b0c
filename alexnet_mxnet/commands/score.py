"""Score a checkpoint on a .rec file: top-1/top-5 on the center crop or 10 crops, per-class
accuracy, confusion matrix (CSV + PNG), images/s.

    python score.py --model-prefix checkpoints/alexnet --epoch 30 --data-val data/val.rec
"""
import json
import os
import sys

from alexnet_mxnet.base.argtypes import POSITIVE_INT
from alexnet_mxnet.base.cli import OneLineErrorParser, add_progress_arg
from alexnet_mxnet.base.devices import add_device_args, get_contexts
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.files import check_output_folder
from alexnet_mxnet.inference import fastpath, model, scoring
from iterators import add_data_args, add_normalize_args
from symbols.args import add_network_args


def build_parser():
    parser = OneLineErrorParser(
        description='Score a checkpoint on a .rec file. Image shape, mean/std and class names '
                    'come from the checkpoint\'s sidecar P-meta.json unless given as flags.')
    model.add_checkpoint_args(parser)
    add_data_args(parser, val='the .rec file to score (its .idx beside it)',
                  train='--precision int8 only: .rec to calibrate on (normally the training .rec)')
    add_network_args(parser, source='checkpoint')
    add_normalize_args(parser, from_checkpoint=True)
    add_device_args(parser)
    fastpath.add_precision_args(parser)
    fastpath.add_calibration_args(parser)
    group = parser.add_argument_group('scoring')
    group.add_argument('--batch-size', type=POSITIVE_INT, default=32,
                       help='images per batch (x10 rows with --ten-crop); at most the record '
                            'count is used (default: %(default)s)')
    group.add_argument('--ten-crop', action='store_true',
                       help='average the softmax over the 4 corner + center crops and their '
                            'mirrors (the AlexNet paper\'s test protocol)')
    group.add_argument('--out-dir', default=None,
                       help='where the confusion matrix CSV/PNG and per-class CSV go '
                            '(default: beside the checkpoint)')
    group.add_argument('--json', action='store_true',
                       help='print the results as one JSON object instead of the text report')
    add_progress_arg(parser)
    return parser


def output_paths(loaded, args):
    """``{kind: path}`` of the files written beside the checkpoint (or in --out-dir)."""
    stem = os.path.basename(loaded.name) + ('-10crop' if args.ten_crop else '') + \
        ('' if args.precision == 'float32' else '-' + args.precision)
    folder = args.out_dir or os.path.dirname(os.path.abspath(loaded.name))
    return {kind: os.path.join(folder, stem + suffix) for kind, suffix in (
        ('confusion_csv', '-confusion.csv'), ('confusion_png', '-confusion.png'),
        ('per_class_csv', '-per-class.csv'))}


def write_outputs(paths, result, loaded):
    matrix = result.confusion()
    scoring.write_confusion_csv(paths['confusion_csv'], matrix, result.class_names)
    scoring.write_per_class_csv(paths['per_class_csv'], result.per_class())
    scoring.plot_confusion(paths['confusion_png'], matrix, result.class_names,
                           '%s: top-1 %.3f on %d images' % (os.path.basename(loaded.name),
                                                           result.accuracy(1), result.num_images))


def print_report(result, as_json, paths):
    """The accuracy report; ``paths``: the files written (None: they could not be)."""
    if as_json:
        json.dump(dict(result.summary(), files=paths or {}), sys.stdout, indent=2)
        print()
    else:
        print(scoring.format_report(result))
        for path in (paths or {}).values():
            print('wrote', path)
    sys.stdout.flush()


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.data_val:
        raise UsageError('give the .rec to score with --data-val REC')
    contexts = get_contexts(args.gpus, args.cpus)
    fastpath.check_precision(args.precision, contexts, args.dtype)
    loaded = model.load_from_args(args)
    paths = output_paths(loaded, args)
    # A folder that takes no files fails now, not after the whole set is scored.
    check_output_folder(os.path.dirname(paths['confusion_csv']),
                        'give --out-dir a folder you can write to')
    result = scoring.score(loaded, args.data_val, args.batch_size, contexts,
                           ten_crop=args.ten_crop, precision=args.precision,
                           calib_rec=args.data_train, num_calib_examples=args.num_calib_examples,
                           calib_mode=args.calib_mode, num_threads=args.data_nthreads,
                           progress=args.progress)
    try:
        write_outputs(paths, result, loaded)
    except OSError:
        print_report(result, args.json, None)   # e.g. a full disk: the accuracy is not lost
        raise
    print_report(result, args.json, paths)
    return result

