"""bfloat16 training of AlexNet in MXNet 1.9.1 on the CPU, against float32: does it run, does it
agree, is it faster, does it reach the same accuracy.

The bfloat16 graph is ``symbols.precision.bf16_training_graph`` of the float32 one (what
``train_imagenet.py --dtype bfloat16`` trains): the operators of ``--bf16-ops`` (default: the
convolutions) and the ReLUs and poolings after them compute in bfloat16, the rest in float32.

1. check:  both graphs bind; one ``train_step`` of each from the same weights on the same batch
   (dropout off): loss, and each gradient's relative error ||g - g_fp32|| / ||g_fp32||, beside
   the same error of the float32 graph fed bf16-rounded weights and batch (the yardstick:
   ReLU masks and max-pool choices flip on rounding alone).
2. speed:  fp32 and bf16 steps timed in interleaved rounds (``--rounds`` x ``--steps``).
3. photos (with ``--data-train``/``--data-val``): both trained ``--epochs`` epochs (constant
   ``--lr``) from the same initial weights on the same images in the same order, epochs
   alternating between them, then validation top-1 of each.

If bf16 training cannot run, the script prints one line ``bf16 training: not possible in
MXNet ...: <the error> (<the MXNet source file that raised it>)`` and exits 1.

    python benchmarks/bf16_training.py                       # check + speed, batch 32 (~2 min)
    python im2rec.py ../shared/datasets/imagenette2-224/train data/nette72 --val-ratio 0.1 \
        --resize 72
    python benchmarks/bf16_training.py --data-train data/nette72_train.rec \
        --data-val data/nette72_val.rec --image-shape 3,67,67 --epochs 2
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import datetime  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import iterators  # noqa: E402
import symbols  # noqa: E402
from alexnet_mxnet.base.argtypes import POSITIVE, POSITIVE_INT  # noqa: E402
from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError, mxnet_error_line  # noqa: E402
from alexnet_mxnet.base.labels import labels_beside  # noqa: E402
from alexnet_mxnet.base.metrics import TopKMetrics  # noqa: E402
from alexnet_mxnet.train.fit import evaluate  # noqa: E402
from alexnet_mxnet.train.lr_schedule import create_initializer  # noqa: E402
from alexnet_mxnet.train.step import train_step  # noqa: E402
from symbols.precision import BF16, COMPUTE_OPS, bf16_rounded, bf16_training_graph  # noqa: E402

ROUNDED = 'float32, bf16-rounded weights and batch'
SGD = dict(momentum=0.9, wd=5e-4)


def graphs(args, dropout):
    fp32 = symbols.get_symbol(args.network, args.num_classes, args.image_shape, dropout=dropout,
                              lrn=args.lrn)
    return {'float32': fp32, BF16: bf16_training_graph(fp32, args.bf16_ops)}


def bound_module(sym, batch_size, shape, params, lr):
    """A bound ``Module`` with SGD at ``lr``, starting from ``params`` (``None``: initialise
    afresh, seeded)."""
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[('data', (batch_size,) + tuple(shape))],
                label_shapes=[('softmax_label', (batch_size,))])
    mx.random.seed(0)
    module.init_params(create_initializer('xavier'), arg_params=params and params[0],
                       aux_params=params and params[1])
    module.init_optimizer(optimizer='sgd', optimizer_params=dict(SGD, learning_rate=lr))
    return module


def _pair(args, syms, batch_size):
    """Both modules, the bf16 one starting from the float32 one's initial weights."""
    fp32 = bound_module(syms['float32'], batch_size, args.image_shape, None, args.lr)
    return {'float32': fp32, BF16: bound_module(syms[BF16], batch_size, args.image_shape,
                                                fp32.get_params(), args.lr)}


def _batch(args, batch_size):
    """Standardised random pixels and labels: the scale of real normalised photos."""
    rng = np.random.RandomState(0)
    data = rng.normal(size=(batch_size,) + tuple(args.image_shape)).astype('float32')
    labels = rng.randint(0, args.num_classes, batch_size).astype('float32')
    return mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array(labels)], pad=0)


def _gradients(module):
    # Module has no public gradient accessor; its one executor holds them by argument name.
    return {name: grad.asnumpy() for name, grad in module._exec_group.execs[0].grad_dict.items()
            if grad is not None and name in module._param_names}


def check(args):
    """Loss and per-parameter gradient relative error against float32 after one step from the
    same weights on the same batch, for the bf16 graph and, as the yardstick, for the float32
    graph fed the bf16-rounded weights and batch: ReLU masks and max-pool choices that flip on
    rounding alone move a gradient by that much."""
    syms = graphs(args, dropout=0)
    modules = _pair(args, syms, args.batch_size)
    weights = [{name: bf16_rounded(value) for name, value in group.items()}
               for group in modules['float32'].get_params()]
    modules[ROUNDED] = bound_module(syms['float32'], args.batch_size, args.image_shape, weights,
                                    args.lr)
    batch, loss, grads = _batch(args, args.batch_size), {}, {}
    for precision, module in modules.items():
        data = batch if precision != ROUNDED else mx.io.DataBatch(
            [bf16_rounded(batch.data[0])], batch.label, pad=0)
        loss[precision] = train_step(module, data, TopKMetrics(0))
        grads[precision] = _gradients(module)
    errors = {precision: {name: float(np.linalg.norm(grads[precision][name] - ref)
                                       / max(np.linalg.norm(ref), 1e-30))
                          for name, ref in grads['float32'].items()}
              for precision in (BF16, ROUNDED)}
    return loss, errors


def speed(args):
    """Images/s of each precision's ``--steps``-step windows, alternating in every round."""
    modules = _pair(args, graphs(args, dropout=0.5), args.batch_size)
    batch = _batch(args, args.batch_size)
    rates = {precision: [] for precision in modules}
    for module in modules.values():
        train_step(module, batch, TopKMetrics(0))        # warm-up: oneDNN primitive creation
    for round_ in range(1, args.rounds + 1):
        for precision, module in modules.items():
            print('round %d/%d: %s ...' % (round_, args.rounds, precision), file=sys.stderr,
                  flush=True)
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(module, batch, TopKMetrics(0))
            rates[precision].append(args.batch_size * args.steps / (time.perf_counter() - start))
    return rates


def train_on_photos(args):
    """Validation top-1/loss and training seconds of each precision after ``--epochs`` epochs
    from the same initial weights on the same batches (epochs alternate between them)."""
    val = iterators.get_val_iter(args.data_val, args.batch_size, args.image_shape)
    modules = _pair(args, graphs(args, dropout=0.5), args.batch_size)
    seconds = {precision: 0.0 for precision in modules}
    for epoch in range(args.epochs):
        for precision, module in modules.items():
            data = iterators.get_train_iter(args.data_train, args.batch_size, args.image_shape,
                                            seed=epoch)
            metrics, start = TopKMetrics(0), time.perf_counter()
            for batch in data:
                if not np.isfinite(train_step(module, batch, metrics)):
                    raise UsageError('%s training diverged (NaN loss) in epoch %d: lower --lr'
                                     % (precision, epoch + 1))
            seconds[precision] += time.perf_counter() - start
            print('epoch %d/%d %s: train %s' % (epoch + 1, args.epochs, precision,
                                                metrics.describe()), file=sys.stderr, flush=True)
    return {precision: dict(evaluate(module, val, 0), seconds=seconds[precision])
            for precision, module in modules.items()}


def _op_list(text):
    ops = [op.strip() for op in text.split(',') if op.strip()]
    if not ops or set(ops) - set(COMPUTE_OPS):
        raise argparse.ArgumentTypeError('choose among %s, got %r' % (','.join(COMPUTE_OPS), text))
    return ops


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--network', default='alexnet', choices=symbols.list_networks(),
                        help='(default: %(default)s)')
    parser.add_argument('--lrn', default='fast', choices=('fast', 'native'),
                        help='(default: %(default)s)')
    parser.add_argument('--bf16-ops', type=_op_list, default=['Convolution'], metavar='OPS',
                        help='operators computing in bfloat16, of %s (default: Convolution; '
                             'ReLU and pooling follow their input)' % ','.join(COMPUTE_OPS))
    parser.add_argument('--batch-size', type=POSITIVE_INT, default=32, help='(default: 32)')
    parser.add_argument('--image-shape', default=None, help='(default: the network\'s, 3,227,227)')
    parser.add_argument('--num-classes', type=POSITIVE_INT, default=None,
                        help='(default: the labels file beside --data-train, else 1000)')
    parser.add_argument('--rounds', type=POSITIVE_INT, default=3,
                        help='interleaved timing rounds (default: %(default)s)')
    parser.add_argument('--steps', type=POSITIVE_INT, default=5,
                        help='training steps per timed window (default: %(default)s)')
    parser.add_argument('--data-train', help='.rec to train both precisions on')
    parser.add_argument('--data-val', help='.rec to score both on (with --data-train)')
    parser.add_argument('--epochs', type=POSITIVE_INT, default=5, help='(default: %(default)s)')
    parser.add_argument('--lr', type=POSITIVE, default=0.01,
                        help='SGD learning rate, momentum 0.9, weight decay 5e-4 '
                             '(default: %(default)s)')
    return parser


def _check_args(args):
    if bool(args.data_train) != bool(args.data_val):
        raise UsageError('give --data-train and --data-val together')
    for path in (args.data_train, args.data_val):
        if path and not os.path.isfile(path):
            raise UsageError('%s not found: make it with `python im2rec.py PHOTOS PREFIX`' % path)
    if args.num_classes is None:
        names = labels_beside(args.data_train) if args.data_train else None
        args.num_classes = len(names) if names else 1000
    args.image_shape = symbols.resolve_image_shape(args.network, args.image_shape)


def _row(name, values, fmt='%.4f'):
    return '| %s | %s |' % (name, ' | '.join(fmt % v if v is not None else 'n/a' for v in values))


def report(args, loss, errors, rates, photos):
    print('AlexNet (%s, %s LRN) training with %s in bfloat16 vs all float32, %s, batch %d at %s, '
          'mxnet %s, %s OpenMP threads, load average %.2f %.2f %.2f at the end\n' % (
              args.network, args.lrn, '+'.join(args.bf16_ops), datetime.date.today().isoformat(),
              args.batch_size,
              'x'.join(map(str, args.image_shape)), mx.__version__,
              os.environ['OMP_NUM_THREADS'], *os.getloadavg()))
    print('`%s`\n' % ' '.join(['python'] + sys.argv))
    median = {p: statistics.median(r) for p, r in rates.items()}
    print('| | float32 | bfloat16 |\n|---|---:|---:|')
    print(_row('loss at step 1 (same weights and batch, no dropout)',
               [loss['float32'], loss[BF16]]))
    print(_row('train img/s (median of %d windows of %d steps)' % (args.rounds, args.steps),
               [median['float32'], median[BF16]], '%.1f'))
    if photos:
        for key, label in (('top1', 'val top-1 after %d epochs' % args.epochs),
                           ('loss', 'val cross-entropy'), ('seconds', 'training seconds')):
            print(_row(label, [photos['float32'][key], photos[BF16][key]],
                       '%.1f' if key == 'seconds' else '%.4f'))
    print('\nbf16 / fp32 speed: %.2fx. Gradient relative error ||g - g_fp32|| / ||g_fp32|| at '
          'step 1, median over parameters: bf16 graph %.2e; fp32 graph on bf16-rounded weights '
          'and batch (loss %.4f) %.2e.\n' % (
              median[BF16] / median['float32'], statistics.median(errors[BF16].values()),
              loss[ROUNDED], statistics.median(errors[ROUNDED].values())))
    print('| parameter | bf16 graph | fp32 graph, bf16-rounded inputs |\n|---|---:|---:|')
    for name in sorted(errors[BF16]):
        print('| %s | %.2e | %.2e |' % (name, errors[BF16][name], errors[ROUNDED][name]))


def _error(err):
    """The error's line and the MXNet source file that raised it (which names the operator)."""
    where = re.findall(r'File "(?:\.\./)*(src/[^"]+)", line (\d+)', str(err))
    return mxnet_error_line(err) + (' (%s:%s)' % where[-1] if where else '')


def main(argv=None):
    args = build_parser().parse_args(argv)
    _check_args(args)
    try:
        loss, errors = check(args)
        rates = speed(args)
        photos = train_on_photos(args) if args.data_train else None
    except (mx.base.MXNetError, RuntimeError) as err:    # Module.bind wraps it in RuntimeError
        print('bf16 training: not possible in MXNet %s: %s' % (mx.__version__, _error(err)))
        return 1
    report(args, loss, errors, rates, photos)


if __name__ == '__main__':
    sys.exit(run_cli(main))
