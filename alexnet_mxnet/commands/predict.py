"""Classify image files (or folders of them) with a checkpoint: top-5 class names with
probabilities. Files that are not usable images (unreadable, special, truncated, corrupt, too
large: see ``alexnet_mxnet.base.imagefile``) and folders that cannot be listed are reported on stderr, one
line each, and in ``--json``; the good files are still classified.

    python predict.py --model-prefix checkpoints/alexnet photos/ cat.jpg
"""
import json
import os
import sys

from alexnet_mxnet.base.argtypes import NON_NEGATIVE_INT, POSITIVE_INT
from alexnet_mxnet.base.cli import OneLineErrorParser, add_progress_arg
from alexnet_mxnet.base.devices import add_device_args, get_contexts
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.imagefile import printable
from alexnet_mxnet.inference import model
from alexnet_mxnet.inference.images import DEFAULT_RESIZE, list_images
from alexnet_mxnet.inference.prediction import predict_files
from iterators import add_normalize_args
from symbols.args import add_network_args


def build_parser():
    parser = OneLineErrorParser(
        description='Print the top-k classes of image files or folders with a checkpoint. The '
                    'crop is score.py\'s center crop: shorter side resized to --resize, then the '
                    'central image-shape crop.')
    parser.add_argument('images', nargs='+', help='image files and/or folders (searched recursively)')
    model.add_checkpoint_args(parser)
    add_network_args(parser, source='checkpoint')
    add_normalize_args(parser, from_checkpoint=True)
    add_device_args(parser)
    group = parser.add_argument_group('prediction')
    group.add_argument('--batch-size', type=POSITIVE_INT, default=32,
                       help='images per forward pass (default: %(default)s)')
    group.add_argument('--top-k', type=POSITIVE_INT, default=5, help='classes to print (default: %(default)s)')
    group.add_argument('--resize', type=NON_NEGATIVE_INT, default=DEFAULT_RESIZE,
                       help='shorter side before the center crop, as alexnet_mxnet.data.im2rec --resize made '
                            'the records score.py reads; 0 keeps the size (default: %(default)s)')
    group.add_argument('--json', action='store_true', help='print one JSON object')
    add_progress_arg(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    missing = [path for path in args.images if not os.path.exists(path)]
    if missing:
        raise UsageError('%s not found' % missing[0])
    paths, left_out = list_images(args.images)
    if not paths:
        raise UsageError('no image files in %s%s' % (', '.join(args.images), ''.join(
            ' (%s: %s)' % (printable(path), reason) for path, reason in left_out[:1])))
    contexts = get_contexts(args.gpus, args.cpus)
    loaded = model.load_from_args(args)
    predictions, unusable = predict_files(loaded, paths, args.batch_size, contexts,
                                          top_k=args.top_k, resize=args.resize,
                                          progress=args.progress)
    skipped = left_out + unusable
    for path, reason in skipped:
        print('skipped %s: %s' % (printable(path), printable(reason)), file=sys.stderr)
    if not predictions:
        raise UsageError('none of the %d files could be read as an image' % len(paths))
    if args.json:
        json.dump({'checkpoint': loaded.name, 'predictions': [p.to_json() for p in predictions],
                   'skipped': [{'path': p, 'reason': r} for p, r in skipped]},
                  sys.stdout, indent=2)
        print()
    else:
        width = max(len(name) for name in loaded.class_names)
        for p in predictions:
            print(printable(p.path))
            for index, name, prob in zip(p.classes, p.names, p.probabilities):
                print('  %6.2f%%  %-*s  (class %d)' % (100 * prob, width, name, index))
    return predictions, skipped

