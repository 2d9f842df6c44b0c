"""Where an AlexNet training step spends its time: ``mx.profiler``'s per-operator table of
``alexnet_mxnet.train.step.train_step`` (forward, backward, SGD update, metrics) on a Module
built as ``fit`` builds it, on synthetic data, as a markdown table (ms per step, share).

Operators run one by one here (``MXNET_EXEC_BULK_EXEC_TRAIN=0``, or the profiler sees one
block of fused segments), which makes the step a little slower than in training.

    python benchmarks/profile_step.py                       # batch 32, 3x227x227, fast LRN
    ALEXNET_LRN_KERNEL=off python benchmarks/profile_step.py    # without the fused kernel
    python benchmarks/profile_step.py --lrn native --batch-size 128
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
os.environ['MXNET_EXEC_BULK_EXEC_TRAIN'] = '0'

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import mxnet as mx  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first

import symbols  # noqa: E402
from alexnet_mxnet.base.argtypes import NON_NEGATIVE_INT, POSITIVE_INT  # noqa: E402
from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.metrics import TopKMetrics  # noqa: E402
from alexnet_mxnet.train.step import train_step  # noqa: E402
from alexnet_mxnet.train.lr_schedule import create_initializer  # noqa: E402
from iterators import SyntheticIter  # noqa: E402
from symbols.lrn import IMPLEMENTATIONS, training_graph  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch-size', type=POSITIVE_INT, default=32, help='(default: %(default)s)')
    parser.add_argument('--image-shape', default='3,227,227', help='(default: %(default)s)')
    parser.add_argument('--lrn', default='fast', choices=IMPLEMENTATIONS, help='(default: %(default)s)')
    parser.add_argument('--steps', type=POSITIVE_INT, default=5,
                        help='profiled steps (default: %(default)s)')
    parser.add_argument('--warmup', type=NON_NEGATIVE_INT, default=2,
                        help='untimed steps first (default: %(default)s)')
    parser.add_argument('--top', type=POSITIVE_INT, default=25,
                        help='rows shown, the costliest first (default: %(default)s)')
    return parser


SGD = dict(learning_rate=0.01, momentum=0.9, wd=5e-4)


def fit_like_module(sym, batch_size, shape):
    """A bound ``Module`` with the paper's initial weights and SGD, as ``fit`` builds it on one
    CPU (no kvstore)."""
    module = mx.mod.Module(training_graph(sym, [mx.cpu()])[0], context=[mx.cpu()])
    module.bind(data_shapes=[('data', (batch_size,) + tuple(shape))],
                label_shapes=[('softmax_label', (batch_size,))])
    module.init_params(create_initializer('alexnet'))
    module.init_optimizer(kvstore=None, optimizer='sgd', optimizer_params=SGD)
    return module


def parse_aggregate(text):
    """``{operator: total ms}`` from the 'operator' section of ``mx.profiler.dumps()``."""
    totals, section = {}, None
    for line in text.splitlines():
        fields = line.split()     # name, count, total, min, max, average
        if len(fields) >= 6 and fields[-5].isdigit():
            if section == 'operator':
                totals[' '.join(fields[:-5])] = float(fields[-4])
        elif fields and not line.startswith(('-', '=', 'Name', '\t')):
            section = line.strip()
    return totals


def profile(batch_size, shape, lrn, steps, warmup):
    """``(ms per operator per step, wall ms per step)``."""
    module = fit_like_module(symbols.get_symbol('alexnet', 1000, shape, lrn=lrn), batch_size,
                             shape)
    batch = next(iter(SyntheticIter(batch_size, shape, 1000, 1)))
    metrics = TopKMetrics(5)
    for _ in range(warmup):
        train_step(module, batch, metrics)
    mx.nd.waitall()
    with tempfile.TemporaryDirectory() as folder:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=os.path.join(folder, 'profile.json'))
        mx.profiler.set_state('run')
        start = time.perf_counter()
        for _ in range(steps):
            train_step(module, batch, metrics)
        mx.nd.waitall()
        wall = (time.perf_counter() - start) / steps
        mx.profiler.set_state('stop')
        totals = parse_aggregate(mx.profiler.dumps(reset=True))
    return {name: ms / steps for name, ms in totals.items()}, 1000 * wall


def main(argv=None):
    args = build_parser().parse_args(argv)
    shape = symbols.resolve_image_shape('alexnet', args.image_shape)
    per_op, wall = profile(args.batch_size, shape, args.lrn, args.steps, args.warmup)
    busy = sum(per_op.values())
    print('AlexNet training step (%s LRN), batch %d, %s, %s threads, SGD %s: %.0f ms per step '
          'wall, %.0f ms in operators\n' % (args.lrn, args.batch_size, 'x'.join(map(str, shape)),
                                            os.environ.get('OMP_NUM_THREADS'), SGD, wall, busy))
    print('| operator | ms/step | share |')
    print('|---|---:|---:|')
    ranked = sorted(per_op.items(), key=lambda item: -item[1])
    for name, ms in ranked[:args.top]:
        print('| %s | %.1f | %.1f%% |' % (name, ms, 100 * ms / busy))
    rest = sum(ms for _, ms in ranked[args.top:])
    if rest:
        print('| (%d others) | %.1f | %.1f%% |' % (len(ranked) - args.top, rest, 100 * rest / busy))


if __name__ == '__main__':
    run_cli(main)
