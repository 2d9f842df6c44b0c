"""Classify image files (or folders of them) with a checkpoint: top-5 class names with
probabilities. Files that are not usable images (unreadable, special, truncated, corrupt, too
large: see ``engine.imagefile``) and folders that cannot be listed are reported on stderr, one
line each, and in ``--json``; the good files are still classified.

    python predict.py --model-prefix checkpoints/alexnet photos/ cat.jpg
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from engine.args import add_device_args  # noqa: E402
from engine.cli import OneLineErrorParser, add_network_args, run_cli  # noqa: E402
from engine.devices import get_contexts  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from engine.imagefile import printable  # noqa: E402
from inference import model  # noqa: E402
from inference.images import DEFAULT_RESIZE, list_images  # noqa: E402
from inference.prediction import predict_files  # noqa: E402
from iterators import add_data_args  # noqa: E402


def build_parser():
    parser = OneLineErrorParser(
        description='Print the top-k classes of image files or folders with a checkpoint. The '
                    'crop is score.py\'s center crop: shorter side resized to --resize, then the '
                    'central image-shape crop.')
    parser.add_argument('images', nargs='+', help='image files and/or folders (searched recursively)')
    model.add_checkpoint_args(parser)
    add_network_args(parser)
    add_data_args(parser)
    add_device_args(parser)
    group = parser.add_argument_group('prediction')
    group.add_argument('--batch-size', type=int, default=32,
                       help='images per forward pass (default: %(default)s)')
    group.add_argument('--top-k', type=int, default=5, help='classes to print (default: %(default)s)')
    group.add_argument('--resize', type=int, default=DEFAULT_RESIZE,
                       help='shorter side before the center crop, as tools.im2rec --resize made '
                            'the records score.py reads; 0 keeps the size (default: %(default)s)')
    group.add_argument('--json', action='store_true', help='print one JSON object')
    group.add_argument('--no-progress', dest='progress', action='store_false',
                       help='no progress bar')
    model.adapt_shared_flags(parser)
    for action in parser._actions:
        if action.dest in ('data_val', 'data_nthreads'):
            action.help = argparse.SUPPRESS
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.top_k < 1 or args.resize < 0:
        raise UsageError('--batch-size and --top-k must be positive and --resize >= 0')
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


def cli():
    """Console-script entry point (setup.py)."""
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
