"""Learning-rate schedules counted in optimizer updates, and the AlexNet initializer."""
import math

import mxnet as mx

from alexnet_mxnet.base.errors import UsageError

SCHEDULERS = ('step', 'poly', 'cosine')


def parse_epochs(text):
    """``'30,60'`` -> ``[30, 60]``; empty -> ``[]``."""
    if not text:
        return []
    try:
        epochs = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        raise UsageError('--lr-step-epochs must be comma-separated epoch numbers, got %r' % text)
    if any(b <= a for a, b in zip(epochs, epochs[1:])) or (epochs and epochs[0] < 1):
        raise UsageError('--lr-step-epochs must be increasing positive epochs, got %r' % text)
    return epochs


def updates_per_epoch(num_examples, batch_size, num_workers=1):
    """Batches one worker runs per epoch (the iterators round the last batch up)."""
    return max(1, int(math.ceil(num_examples / float(batch_size * num_workers))))


class ConstantAfterWarmup(mx.lr_scheduler.LRScheduler):
    """``step`` without steps: the base rate, after an optional warm-up."""

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return self.base_lr


def create_scheduler(kind, lr, epoch_updates, num_epochs, step_epochs=(), factor=0.1,
                     warmup_epochs=0, final_lr=0.0, power=2):
    """An ``mx.lr_scheduler`` in absolute update counts (epoch ``e`` ends at update
    ``e * epoch_updates``), so a run resumed with ``begin_num_update`` gets the same
    rate an uninterrupted run has at that point."""
    if kind not in SCHEDULERS:
        raise UsageError('unknown --lr-scheduler %r; choose one of %s'
                         % (kind, ', '.join(SCHEDULERS)))
    if lr <= 0:
        raise UsageError('--lr must be positive, got %g' % lr)
    if warmup_epochs < 0 or (warmup_epochs and warmup_epochs >= num_epochs):
        raise UsageError('--warmup-epochs must be in [0, --num-epochs), got %g' % warmup_epochs)
    warmup = dict(warmup_steps=int(round(warmup_epochs * epoch_updates)), warmup_begin_lr=0.0)
    total = max(num_epochs * epoch_updates, warmup['warmup_steps'] + 1)
    if kind == 'step':
        steps = [e * epoch_updates for e in step_epochs if e < num_epochs]
        if not 0 < factor <= 1:
            raise UsageError('--lr-factor must be in (0, 1], got %g' % factor)
        if not steps:
            return ConstantAfterWarmup(base_lr=lr, **warmup)
        return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=factor, base_lr=lr, **warmup)
    if kind == 'poly':
        return mx.lr_scheduler.PolyScheduler(max_update=total, base_lr=lr, pwr=power,
                                             final_lr=final_lr, **warmup)
    return mx.lr_scheduler.CosineScheduler(max_update=total, base_lr=lr, final_lr=final_lr,
                                           **warmup)


@mx.init.register
class AlexNetInit(mx.init.Initializer):
    """The paper's recipe: weights ~ N(0, sigma); biases 1 in conv2, conv4, conv5 and the
    hidden fully-connected layers (so their ReLUs start in the active region), 0 elsewhere.
    BatchNorm parameters get MXNet's usual gamma=1, beta=0."""

    ONE_BIAS = ('conv2_bias', 'conv4_bias', 'conv5_bias', 'fc1_bias', 'fc2_bias')

    def __init__(self, sigma=0.01, bias_one=True):
        super(AlexNetInit, self).__init__(sigma=sigma, bias_one=bias_one)
        self.sigma = sigma
        self.bias_one = bias_one

    def _init_weight(self, name, arr):
        arr[:] = mx.nd.random.normal(0, self.sigma, shape=arr.shape, dtype=arr.dtype)

    def _init_bias(self, name, arr):
        arr[:] = 1.0 if self.bias_one and str(name) in self.ONE_BIAS else 0.0


INITIALIZERS = ('alexnet', 'xavier', 'msra')


def create_initializer(kind):
    """``alexnet`` (the paper), ``xavier`` (Glorot: MXNet's default ``Xavier()``, uniform,
    scaled by the mean of fan-in and fan-out) or ``msra`` (He: gaussian scaled by fan-in)."""
    if kind == 'alexnet':
        return AlexNetInit()
    if kind == 'xavier':
        return mx.init.Xavier()
    if kind == 'msra':
        return mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)
    raise UsageError('unknown --initializer %r; choose one of %s' % (kind, ', '.join(INITIALIZERS)))
