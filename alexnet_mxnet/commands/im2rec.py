"""``python im2rec.py SOURCE PREFIX``: photos to RecordIO, over ``alexnet_mxnet.data.im2rec.convert``."""
import os

from alexnet_mxnet.base.argtypes import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, bounded
from alexnet_mxnet.base.cli import OneLineErrorParser, add_progress_arg
from alexnet_mxnet.data.im2rec import convert


def build_parser():
    parser = OneLineErrorParser(
        description='Convert images to MXNet RecordIO (.lst/.rec/.idx per split), with a label '
                    'map PREFIX_labels.txt and a report of skipped bad files PREFIX_skipped.txt.')
    parser.add_argument('source', metavar='SOURCE',
                        help='folder of class folders (ImageNet layout), a stock im2rec .lst file, '
                             'or a CIFAR-10 python batch folder')
    parser.add_argument('prefix', metavar='PREFIX', help='output prefix, e.g. data/imagenette -> '
                                       'data/imagenette_train.rec (with a split) or .rec')
    parser.add_argument('--val-ratio', type=FRACTION, default=0.0, metavar='R',
                        help='stratified fraction of every class written to PREFIX_val.* '
                             '(default: %(default)s = no split)')
    parser.add_argument('--test-ratio', type=FRACTION, default=0.0, metavar='R',
                        help='stratified fraction of every class written to PREFIX_test.*: '
                             'photos for a final report, which neither training nor choices '
                             'made on the validation split see (default: %(default)s = none)')
    parser.add_argument('--seed', type=int, default=0, metavar='N',
                        help='seed of the split and of the record order (default: %(default)s)')
    parser.add_argument('--no-shuffle', dest='shuffle', action='store_false',
                        help='write the records of class folders class by class, not in a '
                             'random order (distributed workers each read a contiguous part '
                             'of a .rec: in class order, each would see only some classes)')
    parser.add_argument('--resize', type=NON_NEGATIVE_INT, default=256, metavar='N',
                        help='shorter side in pixels, 0 keeps the size (default: %(default)s)')
    parser.add_argument('--center-crop', action='store_true',
                        help='then cut the central N x N square')
    parser.add_argument('--quality', type=bounded(int, 1, 100), default=95, metavar='Q',
                        help='JPEG quality 1-100 (default: %(default)s)')
    parser.add_argument('--pass-through', action='store_true',
                        help='store JPEG and PNG files unchanged: no resize, no re-encode (files '
                             'are still checked; bad ones and other formats are skipped)')
    parser.add_argument('--workers', type=POSITIVE_INT, default=None, metavar='K',
                        help='encoding processes (default: all %d cores)' % (os.cpu_count() or 1))
    parser.add_argument('--synsets', default=None, metavar='FILE',
                        help='file of "folder name" lines (e.g. synsets.txt) for readable class names')
    parser.add_argument('--root', default=None, metavar='DIR',
                        help='.lst source only: folder its relative paths start from '
                             '(default: the folder holding the .lst)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
    add_progress_arg(parser)
    return parser


def summary_lines(result):
    lines = []
    for split, per_class in result.counts.items():
        lines.append('%s: %d records in %d classes -> %s' % (
            split, sum(per_class.values()), sum(1 for n in per_class.values() if n),
            result.records[split]))
    lines.append('labels: %s (%d classes)' % (result.labels_path, len(result.class_names)))
    lines.append('%.1f s, %.0f images/s' % (result.seconds, (result.num_records + len(result.skipped))
                                            / max(result.seconds, 1e-9)))
    if result.skipped:
        lines.append('skipped %d bad file(s), listed with the reason in %s'
                     % (len(result.skipped), result.skipped_path))
    else:
        lines.append('skipped 0 files')
    return lines


def main(argv=None):
    """The command line. Ctrl-C or SIGTERM reach ``run_cli`` as exceptions ("interrupted",
    exit 130; "terminated", exit 143) after nothing was published and no temporary is left."""
    args = build_parser().parse_args(argv)
    result = convert(args.source, args.prefix, val_ratio=args.val_ratio,
                     test_ratio=args.test_ratio, seed=args.seed,
                     resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                     pass_through=args.pass_through, num_workers=args.workers,
                     synsets=args.synsets, overwrite=args.overwrite, progress=args.progress,
                     root=args.root, shuffle=args.shuffle)
    print('\n'.join(summary_lines(result)))
    return result
