"""Export a checkpoint to ONNX and check onnxruntime against MXNet on real images.

    python export.py --model-prefix checkpoints/alexnet --epoch 30 --data-val data/val.rec
"""
import os
import sys

import mxnet as mx

import iterators
from alexnet_mxnet.base.argtypes import POSITIVE_INT
from alexnet_mxnet.base.cli import OneLineErrorParser
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.files import check_output_folder
from alexnet_mxnet.inference import model, onnx_export
from alexnet_mxnet.inference.predictor import Predictor
from symbols.args import add_network_args


def build_parser():
    parser = OneLineErrorParser(
        description='Export a checkpoint to ONNX (input "data" N,C,H,W float32 after mean/std '
                    'normalisation, output "softmax" probabilities; dynamic batch size) and '
                    'compare onnxruntime with MXNet on images of --data-val.')
    model.add_checkpoint_args(parser)
    add_network_args(parser, source='checkpoint')
    iterators.add_data_args(parser, train=None, threads=False,
                            val='.rec whose first --num-verify images check the export '
                                '(default: no check)')
    iterators.add_normalize_args(parser, from_checkpoint=True)
    parser.add_argument('--output', default=None,
                        help='ONNX file to write (default: P-NNNN.onnx beside the checkpoint)')
    parser.add_argument('--num-verify', type=POSITIVE_INT, default=32,
                        help='images of --data-val to compare on (default: %(default)s)')
    return parser


def verify(loaded, onnx_path, path_rec, count):
    """``(images, max abs difference, top-1 agreement)`` of onnxruntime vs MXNet on the first
    ``count`` records (all of them when there are fewer)."""
    count = min(count, iterators.check_record_file(path_rec))
    batch = next(iter(iterators.get_val_iter(path_rec, count, loaded.image_shape,
                                             mean_rgb=loaded.mean_rgb, std_rgb=loaded.std_rgb)))
    real = count - batch.pad
    data = batch.data[0][:real].asnumpy()
    mxnet_probs = Predictor.for_model(loaded, real, [mx.cpu()]).probabilities(data)
    diff, agree = onnx_export.compare(mxnet_probs, onnx_export.onnx_probabilities(onnx_path, data))
    return real, diff, agree


def output_path(loaded, output):
    """The ``.onnx`` to write, checked before the export: not a folder, in a folder that
    takes files."""
    path = output or loaded.name + '.onnx'
    if os.path.isdir(path):
        raise UsageError('--output %s is a folder: name the file, e.g. %s' % (
            path, os.path.join(path, os.path.basename(loaded.name) + '.onnx')))
    check_output_folder(os.path.dirname(os.path.abspath(path)),
                        'give --output a file in a folder you can write to')
    return path


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.data_val:
        iterators.check_record_file(args.data_val)
    loaded = model.load_from_args(args)
    if loaded.dtype != 'float32':
        raise UsageError('export.py writes a float32 ONNX model and this network computes in %s: '
                         'give --dtype float32' % loaded.dtype)
    path = output_path(loaded, args.output)
    onnx_export.export_onnx(loaded, path)
    print('wrote %s (input data: Nx%s float32, output softmax: Nx%d)' % (
        path, 'x'.join(map(str, loaded.image_shape)), loaded.num_classes))
    if not args.data_val:
        return path, None
    images, diff, agree = verify(loaded, path, args.data_val, args.num_verify)
    print('onnxruntime vs MXNet on %d images of %s: same top-1 for %d/%d, max abs '
          'probability difference %.3g' % (images, args.data_val, round(agree * images), images, diff))
    if agree < 1.0:
        print('%s: the ONNX model disagrees with MXNet on some images' % os.path.basename(sys.argv[0]),
              file=sys.stderr)
        sys.exit(1)
    return path, (images, diff, agree)

