"""Learning-rate schedules in updates, the AlexNet initializer, contexts and kvstore choice."""
import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.base.devices import check_batch_split, get_contexts
from alexnet_mxnet.train.kvstore import create_kvstore
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train.lr_schedule import AlexNetInit, create_scheduler, parse_epochs, updates_per_epoch


def test_step_schedule_changes_at_epoch_boundaries_after_warmup():
    # 10 updates per epoch; warm-up over epoch 1, x0.1 after epochs 3 and 5.
    sched = create_scheduler('step', 0.1, 10, 8, step_epochs=[3, 5], factor=0.1, warmup_epochs=1)
    lrs = [sched(n) for n in range(1, 81)]   # the optimizer's first update is number 1
    assert lrs[0] == pytest.approx(0.01) and lrs[8] == pytest.approx(0.09)
    assert lrs[9:30] == pytest.approx([0.1] * 21)       # updates 10..30: epochs 1 (end)..3
    assert lrs[30:50] == pytest.approx([0.01] * 20)     # epochs 4-5
    assert lrs[50:] == pytest.approx([0.001] * 30)


def test_resumed_schedule_matches_at_the_same_update():
    fresh = create_scheduler('step', 0.1, 10, 8, step_epochs=[3, 5], factor=0.1)
    walked = [fresh(n) for n in range(1, 61)]
    jumped = create_scheduler('step', 0.1, 10, 8, step_epochs=[3, 5], factor=0.1)
    assert jumped(51) == pytest.approx(walked[50]) == pytest.approx(0.001)


def test_cosine_and_poly_decay_to_zero_over_the_run():
    for kind in ('cosine', 'poly'):
        sched = create_scheduler(kind, 0.1, 10, 5)
        assert sched(1) == pytest.approx(0.1, rel=0.05) and 0 < sched(25) < 0.06
        assert sched(50) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize('kwargs, message', [
    (dict(kind='linear'), 'lr-scheduler'), (dict(lr=0), '--lr'),
    (dict(warmup_epochs=8), 'warmup'), (dict(factor=2.0), 'lr-factor')])
def test_bad_schedule_flags(kwargs, message):
    settings = dict(kind='step', lr=0.1, epoch_updates=10, num_epochs=8, step_epochs=[3])
    settings.update(kwargs)
    with pytest.raises(UsageError, match=message):
        create_scheduler(**settings)


def test_epoch_parsing_and_update_count():
    assert parse_epochs('30,60,80') == [30, 60, 80] and parse_epochs('') == []
    for bad in ('60,30', 'x', '0'):
        with pytest.raises(UsageError):
            parse_epochs(bad)
    assert updates_per_epoch(1438, 32) == 45 and updates_per_epoch(64, 8, num_workers=2) == 4


def test_alexnet_initializer_follows_the_paper():
    init = AlexNetInit()
    weight = mx.nd.zeros((384, 256, 3, 3))
    init(mx.init.InitDesc('conv3_weight'), weight)
    assert abs(weight.asnumpy().std() - 0.01) < 5e-4 and abs(weight.asnumpy().mean()) < 5e-4
    for name, value in (('conv1_bias', 0), ('conv2_bias', 1), ('fc2_bias', 1), ('fc3_bias', 0)):
        bias = mx.nd.full((8,), 7.0)
        init(mx.init.InitDesc(name), bias)
        assert np.all(bias.asnumpy() == value), name


def test_contexts_and_kvstore():
    assert get_contexts() == [mx.cpu(0)]
    assert get_contexts(cpus=2) == [mx.cpu(0), mx.cpu(1)]
    with pytest.raises(UsageError, match='GPU 0'):
        get_contexts(gpus='0')
    with pytest.raises(UsageError, match='--gpus'):
        get_contexts(gpus='a,b')
    assert create_kvstore('device', [mx.cpu(0)]) is None
    assert create_kvstore('local', [mx.cpu(0), mx.cpu(1)]).type == 'local'
    with pytest.raises(UsageError, match='divisible'):
        check_batch_split(9, [mx.cpu(0), mx.cpu(1)])
