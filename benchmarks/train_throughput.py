"""Training throughput: this package's AlexNet on mx.mod.Module (the step alexnet_mxnet.train.fit runs)
against the same AlexNet in PyTorch (``inference.torch_alexnet``, built layer for layer
from the MXNet graph), on the same CPU, in one run.

Both do forward, backward and an SGD step (momentum 0.9, weight decay 5e-4) on the same
batch of random images, same layers (MXNet's AlexNet layout: 96-256-384-384-256 filters,
LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2) after conv1/conv2, 3/2 max-pooling,
2x fc 4096 with dropout 0.5), same batch and input size, all cores. The MXNet step also
copies the outputs to numpy, as fit does for its metrics.

    python benchmarks/train_throughput.py                       # batch 32 at 3x227x227
    python benchmarks/train_throughput.py --image-shape 3,127,127 --batch-size 64
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first

import symbols  # noqa: E402
from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402
from alexnet_mxnet.train.lr_schedule import create_initializer  # noqa: E402

SGD = dict(lr=0.01, momentum=0.9, wd=5e-4)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch-size', type=int, default=32, help='(default: %(default)s)')
    parser.add_argument('--image-shape', default='3,227,227', help='(default: %(default)s)')
    parser.add_argument('--num-classes', type=int, default=1000, help='(default: %(default)s)')
    parser.add_argument('--batches', type=int, default=20,
                        help='timed training steps per framework (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed steps first (default: %(default)s)')
    return parser


def _timed(step, batches, warmup):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return time.perf_counter() - start


def mxnet_seconds(batch_size, shape, num_classes, batches, warmup):
    sym = symbols.get_symbol('alexnet', num_classes, shape)
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[('data', (batch_size,) + shape)],
                label_shapes=[('softmax_label', (batch_size,))])
    module.init_params(create_initializer('msra'))
    module.init_optimizer(optimizer='sgd', optimizer_params=dict(
        learning_rate=SGD['lr'], momentum=SGD['momentum'], wd=SGD['wd']))
    rng = np.random.RandomState(0)
    batch = mx.io.DataBatch([mx.nd.array(rng.randn(batch_size, *shape))],
                            [mx.nd.array(rng.randint(0, num_classes, batch_size))])

    def step():
        module.forward_backward(batch)
        module.update()
        module.get_outputs()[0].asnumpy()
    return _timed(step, batches, warmup)


def torch_seconds(batch_size, shape, num_classes, batches, warmup):
    import torch
    from alexnet_mxnet.inference.torch_alexnet import torch_model
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    # The torch.nn twin is built from the MXNet graph itself, so the layers cannot drift apart.
    model = torch_model(symbols.get_symbol('alexnet', num_classes, shape), shape).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD['lr'], momentum=SGD['momentum'],
                                weight_decay=SGD['wd'])
    loss_fn = torch.nn.CrossEntropyLoss()
    data = torch.randn((batch_size,) + shape)
    labels = torch.randint(0, num_classes, (batch_size,))

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(data), labels)
        loss.backward()
        optimizer.step()
    return _timed(step, batches, warmup)


def main(argv=None):
    args = build_parser().parse_args(argv)
    shape = symbols.resolve_image_shape('alexnet', args.image_shape)
    if min(args.batch_size, args.batches, args.num_classes) < 1 or args.warmup < 0:
        raise UsageError('--batch-size, --batches and --num-classes must be positive')
    images = args.batch_size * args.batches
    rows = [('mxnet %s (Module)' % mx.__version__,
             mxnet_seconds(args.batch_size, shape, args.num_classes, args.batches, args.warmup))]
    try:
        import torch
    except ImportError:
        torch = None
        print('PyTorch is not installed: only the MXNet row is measured. Install the CPU wheel '
              'with `pip install torch==2.13.0` (not plain `torch`, which pulls a CUDA build).',
              file=sys.stderr)
    if torch is not None:
        rows.append(('pytorch %s' % torch.__version__,
                     torch_seconds(args.batch_size, shape, args.num_classes, args.batches,
                                   args.warmup)))
    print('AlexNet training, batch %d, input %s, %d timed steps, %s threads\n'
          % (args.batch_size, 'x'.join(map(str, shape)), args.batches,
             os.environ.get('OMP_NUM_THREADS')))
    print('| framework | images/s | ms/step |')
    print('|---|---:|---:|')
    for name, seconds in rows:
        print('| %s | %.1f | %.0f |' % (name, images / seconds, 1000 * seconds / args.batches))
    if len(rows) == 2:
        print('\nmxnet / pytorch images/s ratio: %.2f' % (rows[1][1] / rows[0][1]))


if __name__ == '__main__':
    run_cli(main)
