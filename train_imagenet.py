"""Train AlexNet on RecordIO data with mx.mod.Module; without data flags, on the digits demo.

    python train_imagenet.py                                   # built-in demo, CPU
    python train_imagenet.py --gpus 0,1 --data-train train.rec --data-val val.rec
    python train_imagenet.py --model-prefix checkpoints/alexnet --load-epoch 10   # resume
"""
import os
import sys

# MXNet sizes its OpenMP pool at import and would otherwise use half the cores.
os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

from engine.cli import run_cli  # noqa: E402

# Exit statuses of a run stopped by a signal, as a shell reports them (128 + signal number).
STOP_STATUS = {'SIGINT': 130, 'SIGTERM': 143}


def main(argv=None):
    # MXNet loads here, inside run_cli: a Ctrl-C during the seconds that takes is one line too.
    from engine.args import build_train_parser
    from engine.callbacks import Diverged
    from engine.fit import fit
    args = build_train_parser().parse_args(argv)
    try:
        result = fit(args)
    except Diverged as err:
        print('%s: error: %s' % (os.path.basename(sys.argv[0]), err), file=sys.stderr)
        return 1
    if getattr(result, 'stopped_by', None):
        return STOP_STATUS.get(result.stopped_by, 1)
    return 0


def cli():
    """Console-script entry point (setup.py)."""
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
