"""Forward and forward+backward timing of a network on synthetic data (no decoding cost),
as the AlexNet speed write-ups report it: ``burn_in`` untimed batches, then the mean and
standard deviation of ``num_batches`` timed ones."""
import os
import time
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from tqdm import tqdm

import symbols
from symbols.lrn import training_graph
from iterators import SyntheticIter
from alexnet_mxnet.inference.model import inference_symbol
from alexnet_mxnet.inference.predictor import Predictor, check_memory
from alexnet_mxnet.inference.torch_alexnet import torch_model


@dataclass
class Timing:
    batch_size: int
    seconds: list            # per timed batch

    @property
    def mean(self):
        return float(np.mean(self.seconds))

    @property
    def std(self):
        return float(np.std(self.seconds))

    @property
    def images_per_second(self):
        return self.batch_size / self.mean

    def __str__(self):
        return '%.4f +- %.4f s/batch (%.1f images/s)' % (self.mean, self.std, self.images_per_second)


@dataclass
class Result:
    framework: str           # 'mxnet' or 'pytorch'
    device: str
    batch_size: int
    precision: str
    forward: Optional[Timing]
    forward_backward: Optional[Timing]
    note: str = ''           # why a timing is missing


def _timed(step, num_batches, burn_in, batch_size, label, progress):
    bar = tqdm(total=burn_in + num_batches, desc=label, unit='batch', leave=False,
               disable=not progress)
    for _ in range(burn_in):
        step()
        bar.update()
    seconds = []
    for _ in range(num_batches):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
        bar.update()
    bar.close()
    return Timing(batch_size, seconds)


def random_params(sym, data_shape, seed=0):
    """Xavier-initialised ``(arg_params, aux_params)`` for ``sym``."""
    mx.random.seed(seed)
    module = mx.mod.Module(inference_symbol(sym), label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', data_shape)], for_training=False)
    module.init_params(mx.init.Xavier(magnitude=2.0))
    return module.get_params()


def time_mxnet(network='alexnet', batch_size=32, image_shape=None, num_classes=1000,
               contexts=None, dtype='float32', precision='float32', num_batches=100, burn_in=10,
               backward=True, progress=False, lrn='fast'):
    """``Result`` for one configuration; int8 is calibrated on the synthetic batch itself
    (speed only: score.py measures accuracy with real calibration images). ``lrn`` is the
    training graph's LRN; the forward pass runs the inference graph (``mx.sym.LRN``)."""
    contexts = contexts or [mx.cpu()]
    shape = symbols.resolve_image_shape(network, image_shape)
    sym = symbols.get_symbol(network, num_classes=num_classes, image_shape=shape, dtype=dtype,
                             lrn=lrn)
    check_memory(sym, batch_size, shape)     # before the synthetic batch is allocated
    data = SyntheticIter(batch_size, shape, num_classes, 1)
    batch = next(iter(data))
    arg_params, aux_params = random_params(sym, (batch_size,) + shape)
    predictor = Predictor(sym, arg_params, aux_params, shape, batch_size, contexts,
                          precision=precision, calib_iter=data, num_calib_examples=batch_size)

    def forward():
        predictor.module.forward(mx.io.DataBatch(batch.data), is_train=False)
        predictor.module.get_outputs()[0].wait_to_read()
    label = 'mxnet %s batch %d %s' % (device_name(contexts), batch_size, precision)
    result = Result('mxnet', device_name(contexts), batch_size, precision,
                    _timed(forward, num_batches, burn_in, batch_size, label + ' forward',
                           progress), None)
    if not backward:
        return result
    if precision != 'float32':
        result.note = 'forward+backward: n/a, %s is an inference path' % precision
        return result
    module = mx.mod.Module(training_graph(sym, contexts)[0], context=contexts)  # as fit runs it
    module.bind(data_shapes=data.provide_data, label_shapes=data.provide_label)
    module.set_params(arg_params, aux_params)

    def forward_backward():
        module.forward(batch, is_train=True)
        module.backward()
        mx.nd.waitall()
    result.forward_backward = _timed(forward_backward, num_batches, burn_in, batch_size,
                                     label + ' forward+backward', progress)
    return result


def time_pytorch(network='alexnet', batch_size=32, image_shape=None, num_classes=1000,
                 num_batches=100, burn_in=10, backward=True, progress=False):
    """The same network in PyTorch on the CPU (``inference.torch_alexnet``), float32."""
    import torch
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS') or os.cpu_count() or 1))
    torch.manual_seed(0)
    shape = symbols.resolve_image_shape(network, image_shape)
    sym = symbols.get_symbol(network, num_classes=num_classes, image_shape=shape)
    model = torch_model(sym, shape)
    data = torch.rand((batch_size,) + shape) * 2 - 1
    labels = torch.randint(0, num_classes, (batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def forward():
        with torch.inference_mode():
            model(data)
    model.eval()
    label = 'pytorch cpu batch %d' % batch_size
    result = Result('pytorch %s' % torch.__version__.split('+')[0], 'cpu', batch_size,
                    'float32', _timed(forward, num_batches, burn_in, batch_size,
                                      label + ' forward', progress), None)
    if backward:
        model.train()

        def forward_backward():
            model.zero_grad(set_to_none=True)
            loss_fn(model(data), labels).backward()
        result.forward_backward = _timed(forward_backward, num_batches, burn_in, batch_size,
                                         label + ' forward+backward', progress)
    return result


def device_name(contexts):
    if contexts[0].device_type == 'cpu':
        return 'cpu' if len(contexts) == 1 else 'cpu x%d' % len(contexts)
    return 'gpu ' + ','.join(str(c.device_id) for c in contexts)


def format_table(results):
    """Markdown table: one row per configuration, ms/batch and images/s."""
    def cells(timing):
        if timing is None:
            return ['n/a', 'n/a']
        return ['%.1f +- %.1f' % (1000 * timing.mean, 1000 * timing.std),
                '%.1f' % timing.images_per_second]
    header = ['framework', 'device', 'batch', 'precision', 'forward ms/batch', 'forward img/s',
              'fwd+bwd ms/batch', 'fwd+bwd img/s']
    rows = [[r.framework, r.device, str(r.batch_size), r.precision] + cells(r.forward)
            + cells(r.forward_backward) for r in results]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: '| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'  # noqa: E731
    return '\n'.join([line(header), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
                     + [line(row) for row in rows])
