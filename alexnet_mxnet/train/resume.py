"""``--load-epoch auto``: one command line that starts a run and, run again after a failure
(``launch.py --max-restarts``, a requeued batch job), resumes it from its newest checkpoint.

``auto`` becomes the number of the run's newest complete checkpoint (what a manual resume
would pass), or nothing when there is none, before any other check: from there on the run is
exactly a manual resume or a new run. Every worker of a distributed job resolves it alike
from the shared ``--model-prefix``, before joining the job (when rank 0 cannot yet write).
"""
import argparse
from types import SimpleNamespace

from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.argtypes import POSITIVE_INT
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train.callbacks import LOG

AUTO = 'auto'


def load_epoch_flag(text):
    """``--load-epoch``: an epoch number, or ``auto``."""
    if text == AUTO:
        return AUTO
    try:
        return POSITIVE_INT(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError('must be an epoch number >= 1 or auto, got %r'
                                         % text) from None


def resolve_load_epoch(args):
    """Replace ``args.load_epoch == 'auto'`` by the epoch to resume from, or None to start
    afresh. Returns the summary of a run that has nothing left to train (its checkpoints reach
    ``--num-epochs``), else None."""
    if args.load_epoch != AUTO:
        return None
    prefix = args.model_prefix
    if not prefix:
        raise UsageError('--load-epoch auto needs --model-prefix: the run to resume, or to start '
                         'there')
    if args.overwrite:
        raise UsageError('give --load-epoch auto (resume the run) or --overwrite (replace it), '
                         'not both: a restart would replace the run')
    if args.pretrained:
        raise UsageError('--load-epoch auto resumes a run from its own checkpoints, and cannot '
                         'take --pretrained: start the fine-tuning with --pretrained, resume it '
                         'with --load-epoch N')
    meta = ckpt.read_sidecar(prefix)
    epochs = ckpt.recorded_epochs(prefix)
    latest = ckpt.latest_epoch(prefix)
    if latest is None:
        args.load_epoch = None
        leftovers = ckpt.run_files(prefix)
        if leftovers:       # a run killed before its first checkpoint: nothing to keep
            args.overwrite = True
        LOG.info('--load-epoch auto: %s holds no complete checkpoint; starting %s', prefix,
                 'afresh (replacing %d files of a run that saved none)' % len(leftovers)
                 if leftovers else 'a new run')
        return None
    # Not given: the same command's default, which the run recorded.
    num_epochs = args.num_epochs or meta.get('config', {}).get('num_epochs')
    if num_epochs and latest >= num_epochs:
        if not _is_partial(meta, latest):
            LOG.info('--load-epoch auto: %s is complete: epoch %d of --num-epochs %d is saved; '
                     'nothing to train (raise --num-epochs to continue it)', prefix, latest,
                     num_epochs)
            return SimpleNamespace(prefix=prefix, epoch=latest, stopped_by=None, module=None,
                                   rows=None, meta=meta)
        earlier = [e for e in epochs if e < latest and not _is_partial(meta, e)]
        if not earlier:
            raise UsageError('%s: its last epoch %d was stopped partway and no earlier '
                             'checkpoint is kept; raise --num-epochs to continue it, or start '
                             'over with --overwrite' % (prefix, latest))
        LOG.info('--load-epoch auto: epoch %d of %s was stopped partway; repeating it from '
                 'epoch %d', latest, prefix, earlier[-1])
        latest = earlier[-1]
    args.load_epoch = latest
    LOG.info('--load-epoch auto: resuming %s from epoch %d%s', prefix, latest,
             ' (saved partway through it)' if _is_partial(meta, latest) else '')
    return None


def _is_partial(meta, epoch):
    return bool(meta.get('checkpoints', {}).get(str(epoch), {}).get('partial'))
