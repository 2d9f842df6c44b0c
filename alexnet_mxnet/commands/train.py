"""``python train_imagenet.py``: train AlexNet on RecordIO data with mx.mod.Module; without data
flags, on the built-in digits demo.

    python train_imagenet.py                                   # built-in demo, CPU
    python train_imagenet.py --gpus 0,1 --data-train train.rec --data-val val.rec
    python train_imagenet.py --model-prefix checkpoints/alexnet --load-epoch 10   # resume
"""
import os
import sys

from alexnet_mxnet.train.args import build_train_parser
from alexnet_mxnet.train.callbacks import Diverged, setup_logging
from alexnet_mxnet.train.fit import fit

# Exit statuses of a run stopped by a signal, as a shell reports them (128 + signal number).
STOP_STATUS = {'SIGINT': 130, 'SIGTERM': 143}


def main(argv=None):
    args = build_train_parser().parse_args(argv)
    setup_logging()
    try:
        result = fit(args)
    except Diverged as err:
        print('%s: error: %s' % (os.path.basename(sys.argv[0]), err), file=sys.stderr)
        return 1
    if getattr(result, 'stopped_by', None):
        return STOP_STATUS.get(result.stopped_by, 1)
    return 0
