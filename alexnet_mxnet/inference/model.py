"""Load a checkpoint for inference: which files, which preprocessing, which graph.

Only the epochs the run recorded in its sidecar count (``alexnet_mxnet.base.checkpoint.recorded_epochs``).
The sidecar is the source of the preprocessing (image shape, mean/std, class names); a flag
given on the command line overrides it, and without a sidecar the image shape and mean must
be given: they are never guessed. The checkpoint's own parameters are checked against both
so a mismatch is a one-line error instead of a crash deep inside MXNet.
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np

import symbols
from alexnet_mxnet.base import checkpoint
from alexnet_mxnet.base.argtypes import NON_NEGATIVE_INT, parse_image_shape
from alexnet_mxnet.base.errors import UsageError, mxnet_error_line
from alexnet_mxnet.base.labels import read_labels_file
from symbols.alexnet import WEIGHT_DTYPE

# P-NNNN.params per epoch, P-NNNN-ema.params (the average of the weights, --model-ema), and
# the engine's P-best.params.
_PARAMS_FILE = re.compile(
    r'^(?P<prefix>.+)-(?:(?P<epoch>\d{4,})(?P<ema>-ema)?|best)\.params$')


@dataclass
class LoadedModel:
    symbol: mx.sym.Symbol   # the training graph, ending in SoftmaxOutput
    arg_params: dict
    aux_params: dict
    prefix: str
    params_file: str
    network: Optional[str]
    num_classes: int
    image_shape: tuple       # (C, H, W)
    mean_rgb: tuple
    std_rgb: Optional[tuple]
    class_names: list        # always num_classes names ('0', '1', ... when unknown)
    dtype: str               # what the graph computes in: 'float32' or 'float16'

    @property
    def name(self):
        """``P-0007`` or ``P-best``: names the outputs made from this checkpoint."""
        return self.params_file[:-len('.params')]


def add_checkpoint_args(parser):
    """``--model-prefix``/``--epoch`` or ``--params``: the checkpoint every inference CLI reads."""
    group = parser.add_argument_group('checkpoint')
    group.add_argument('--model-prefix', metavar='P',
                       help='checkpoint prefix: reads P-symbol.json, P-NNNN.params, P-meta.json')
    group.add_argument('--epoch', type=NON_NEGATIVE_INT, default=None,
                       help='epoch to load, one the run\'s sidecar records (default: the run\'s '
                            'latest)')
    group.add_argument('--params', metavar='FILE',
                       help='a P-NNNN.params, P-NNNN-ema.params or P-best.params file, instead '
                            'of --model-prefix/--epoch')
    group.add_argument('--ema', action='store_true',
                       help='with --model-prefix: the average of the weights saved with that '
                            'epoch (P-NNNN-ema.params, trained with --model-ema)')
    group.add_argument('--class-names', metavar='FILE',
                       help='class names, one per line or im2rec\'s index<TAB>folder<TAB>name '
                            'labels file (default: from the sidecar)')
    return group


def resolve_checkpoint(model_prefix=None, epoch=None, params=None, ema=False):
    """``(prefix, params_file)`` from either way of naming a checkpoint: by default the run's
    latest recorded epoch (``ema``: the average of its weights); an epoch the run does not
    record is refused."""
    if params:
        if model_prefix or epoch is not None or ema:
            raise UsageError('give either --params or --model-prefix/--epoch/--ema, not both')
        match = _PARAMS_FILE.match(params)
        if not match:
            raise UsageError('--params %s is not named like P-NNNN.params, P-NNNN-ema.params or '
                             'P-best.params' % params)
        if not os.path.isfile(params):
            raise UsageError('checkpoint file %s not found' % params)
        prefix = match.group('prefix')
        checkpoint.read_sidecar(prefix)
        if match.group('epoch'):
            _check_recorded(prefix, int(match.group('epoch')))
            if match.group('ema'):
                _ema_file(prefix, int(match.group('epoch')))
        return prefix, params
    if not model_prefix:
        raise UsageError('name a checkpoint with --model-prefix P (and --epoch N) or --params FILE')
    checkpoint.read_sidecar(model_prefix)
    if epoch is None:
        epoch = checkpoint.latest_epoch(model_prefix)
        if epoch is None:
            raise UsageError('no checkpoint %s-NNNN.params found' % model_prefix)
    else:
        _check_recorded(model_prefix, epoch)
    if ema:
        return model_prefix, _ema_file(model_prefix, epoch)
    return model_prefix, checkpoint.params_path(model_prefix, epoch)


def _ema_file(prefix, epoch):
    """The average of the weights that the run's sidecar records with ``epoch``: a file of
    that name the sidecar does not list (another run's, or a save cut short) is refused."""
    entry = checkpoint.read_sidecar(prefix).get('checkpoints', {}).get(str(epoch), {})
    if not entry.get('ema'):
        raise UsageError('epoch %d of %s has no average of the weights: the run was trained '
                         'without --model-ema' % (epoch, prefix))
    path = os.path.join(os.path.dirname(prefix), entry['ema'])
    if not os.path.isfile(path):
        raise UsageError('checkpoint file %s not found' % path)
    return path


def _check_recorded(prefix, epoch):
    epochs = checkpoint.recorded_epochs(prefix)
    if epoch in epochs:
        return
    recorded = ('recorded epochs: ' + ', '.join(map(str, epochs)) if epochs
                else 'no recorded epochs')
    if os.path.isfile(checkpoint.params_path(prefix, epoch)):
        raise UsageError(
            'epoch %d of %s is not part of the run: its sidecar %s does not record it (a save '
            'cut short, or left by a continuation abandoned when training resumed from an '
            'earlier epoch); %s' % (epoch, prefix, checkpoint.sidecar_path(prefix), recorded))
    raise UsageError('epoch %d of %s not found (%s)' % (epoch, prefix, recorded))


def load_model(prefix, params_file, *, network=None, num_classes=None, image_shape=None, dtype=None,
               mean_rgb=None, std_rgb=None, class_names=None):
    """The checkpoint with its preprocessing: keyword arguments that are not ``None`` override
    the sidecar; without a sidecar ``image_shape``, ``mean_rgb`` and ``std_rgb`` are required.
    ``network``/``dtype`` rebuild the graph from the registry (e.g. float16 on a GPU) with the
    checkpoint's parameters; ``num_classes`` is checked against them."""
    meta = checkpoint.read_sidecar(prefix)
    shape = image_shape or meta.get('image_shape')
    mean = mean_rgb if mean_rgb is not None else meta.get('mean_rgb')
    std = std_rgb if std_rgb is not None else meta.get('std_rgb')
    # A sidecar records "no std" as std_rgb null: a missing key says nothing.
    _check_preprocessing_stated(prefix, meta, dict(
        image_shape=shape is not None, mean_rgb=mean is not None,
        std_rgb=std_rgb is not None or 'std_rgb' in meta))
    rebuild = network is not None or dtype is not None
    network = network or meta.get('network')
    sym, arg_params, aux_params = _load_files(prefix, params_file, network)
    shape = parse_image_shape(shape)
    saved_classes = _output_classes(sym, arg_params, aux_params, shape, params_file)
    if num_classes is not None and num_classes != saved_classes:
        raise UsageError('--num-classes %d does not match the checkpoint, which has %d classes'
                         % (num_classes, saved_classes))
    if rebuild:
        if network is None:
            raise UsageError('--dtype needs --network: %s has no sidecar naming its network' % prefix)
        # A bfloat16-trained checkpoint is a float32 one (symbols.precision); an unknown dtype
        # fails in get_symbol, in one line.
        saved_dtype = meta.get('dtype', 'float32')
        sym = symbols.get_symbol(network, num_classes=saved_classes, image_shape=shape,
                                 dtype=dtype or WEIGHT_DTYPE.get(saved_dtype, saved_dtype))
        _output_classes(sym, arg_params, aux_params, shape, params_file)
    names = class_names if class_names is not None else meta.get('class_names')
    if names is None:
        names = [str(i) for i in range(saved_classes)]
    if len(names) != saved_classes:
        raise UsageError('%d class names given for a checkpoint with %d classes'
                         % (len(names), saved_classes))
    return LoadedModel(sym, arg_params, aux_params, prefix, params_file, network, saved_classes, shape,
                       tuple(mean), tuple(std) if std else None, list(names), graph_dtype(sym))


# What inference must know of how training prepared the images: sidecar key, flag.
PREPROCESSING = (('image_shape', '--image-shape C,H,W'), ('mean_rgb', '--rgb-mean R,G,B'),
                 ('std_rgb', '--rgb-std R,G,B'))


def _check_preprocessing_stated(prefix, meta, stated):
    """Refuse unless each of ``PREPROCESSING`` is given or recorded (``stated``: key -> bool):
    a guess (the network's default size, the ImageNet mean, no std) would give plausible but
    wrong probabilities, so the user must say how training prepared the images."""
    missing = [(key, flag) for key, flag in PREPROCESSING if not stated[key]]
    if not missing:
        return
    sidecar = checkpoint.sidecar_path(prefix)
    lacking = ('%s has no sidecar %s' % (prefix, sidecar) if not meta else
               'the sidecar %s does not record %s' % (sidecar, ', '.join(k for k, _ in missing)))
    flags = [flag for _, flag in missing]
    wanted = ' and '.join(filter(None, [', '.join(flags[:-1]), flags[-1]]))
    raise UsageError('%s, so how its images were prepared is unknown: add %s as in training '
                     '(--rgb-std 1,1,1 if training divided by no std)' % (lacking, wanted))


def load_from_args(args):
    """``load_model`` from the flags of ``add_checkpoint_args``, ``add_network_args`` and
    ``add_normalize_args`` (both with their ``checkpoint`` defaults: None)."""
    prefix, params_file = resolve_checkpoint(args.model_prefix, args.epoch, args.params,
                                             args.ema)
    return load_model(prefix, params_file, network=args.network, num_classes=args.num_classes,
                      image_shape=args.image_shape, dtype=args.dtype,
                      mean_rgb=getattr(args, 'rgb_mean', None), std_rgb=getattr(args, 'rgb_std', None),
                      class_names=read_labels_file(args.class_names) if args.class_names else None)


def _load_files(prefix, params_file, network):
    """``(symbol, arg_params, aux_params)`` as ``mx.model.load_checkpoint`` reads them."""
    path = checkpoint.symbol_path(prefix)
    if not os.path.isfile(path):
        raise UsageError('checkpoint file %s not found' % path)
    arg_params, aux_params = symbols.load_weights(params_file, network)
    try:
        sym = mx.sym.load(path)
    except mx.base.MXNetError as err:
        raise UsageError('%s is not an MXNet graph (truncated or not P-symbol.json as MXNet saves '
                         'it): %s' % (path, mxnet_error_line(err))) from None
    return sym, arg_params, aux_params


def graph_dtype(sym):
    """``'float16'`` when ``sym`` computes in float16 (its parameters are float16), else
    ``'float32'``."""
    arg_types, _, _ = sym.infer_type(data='float32')
    return 'float16' if any(t == np.float16 for t in arg_types) else 'float32'


def _output_classes(sym, arg_params, aux_params, image_shape, params_file):
    """Number of classes the graph outputs for ``image_shape``; shape mismatches between the
    graph, its parameters and the input size become one-line errors."""
    name = os.path.basename(params_file)
    data_shape = (1,) + tuple(image_shape)
    _, out_shapes, _ = symbols.infer_shapes(sym, data_shape, name)
    checkpoint.check_compatible(sym, data_shape, arg_params, aux_params, name)
    missing = [k for k in sym.list_arguments() if k not in arg_params and k not in ('data', 'softmax_label')]
    if missing:
        raise UsageError('%s lacks parameters %s' % (name, ', '.join(missing)))
    return int(out_shapes[0][-1])


def inference_symbol(sym):
    """The graph with its ``SoftmaxOutput`` (which wants a label input) replaced by a plain
    ``softmax``: the form that binds without labels, converts to bfloat16/int8 and exports
    to ONNX (MXNet 1.9.1's exporter fails on SoftmaxOutput's label input)."""
    head = json.loads(sym.tojson())
    node = head['nodes'][head['heads'][0][0]]
    if node['op'] != 'SoftmaxOutput':
        return sym
    return mx.sym.softmax(sym.get_children()[0], axis=-1, name=node['name'])
