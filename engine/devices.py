"""Device contexts from ``--gpus`` / ``--cpus``, and the kvstore that joins them."""
import os

import mxnet as mx

from engine.errors import UsageError

# One CPU context by default: MXNet's CPU operators already spread one batch over every
# core with OpenMP, so splitting the batch over several CPU contexts only adds gradient
# copies. ``--cpus 2`` still exercises the multi-device path (kvstore, split batches).
DEFAULT_CPUS = 1

# What launch.py gives every process of a distributed job: its role and where the scheduler is.
DIST_ENVIRONMENT = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_WORKER',
                    'DMLC_NUM_SERVER')

KVSTORE_TYPES = ('local', 'device', 'nccl', 'dist_sync', 'dist_async', 'dist_device_sync',
                 'dist_sync_device')


def parse_gpus(text):
    """``'0,1'`` -> ``[0, 1]``; ``''``/``None`` -> ``[]``."""
    if not text:
        return []
    try:
        ids = [int(v) for v in str(text).split(',') if v.strip() != '']
    except ValueError:
        raise UsageError('--gpus must be comma-separated GPU numbers such as 0,1, got %r' % text)
    if len(set(ids)) != len(ids) or min(ids) < 0:
        raise UsageError('--gpus must list distinct non-negative GPU numbers, got %r' % text)
    return ids


def get_contexts(gpus=None, cpus=None):
    """``mx.gpu(i)`` for each listed GPU (checked against the GPUs present), else
    ``cpus`` CPU contexts (default ``DEFAULT_CPUS``)."""
    ids = parse_gpus(gpus)
    if ids:
        if cpus:
            raise UsageError('give either --gpus or --cpus, not both')
        present = mx.context.num_gpus()
        absent = [i for i in ids if i >= present]
        if absent:
            raise UsageError('--gpus names GPU %s but this machine has %d GPU(s)%s'
                             % (','.join(map(str, absent)), present,
                                '' if present else ' (or mxnet is the CPU build)'))
        return [mx.gpu(i) for i in ids]
    count = DEFAULT_CPUS if cpus is None else cpus
    if count < 1:
        raise UsageError('--cpus must be at least 1, got %d' % count)
    return [mx.cpu(i) for i in range(count)]


def check_batch_split(batch_size, contexts):
    """The global batch is split evenly over the devices."""
    if batch_size < 1:
        raise UsageError('--batch-size must be positive, got %d' % batch_size)
    if batch_size % len(contexts):
        raise UsageError('--batch-size %d is not divisible by the %d devices; use a multiple of %d'
                         % (batch_size, len(contexts), len(contexts)))


def create_kvstore(kv_type, contexts):
    """A kvstore only where one is needed: several devices or distributed training.

    Returns ``None`` for a single local device, as ``mx.mod.Module`` would. The kvstore's
    ``rank``/``num_workers`` decide which shard of the data this worker reads.
    """
    if kv_type not in KVSTORE_TYPES:
        raise UsageError('unknown --kv-store %r; choose one of %s'
                         % (kv_type, ', '.join(KVSTORE_TYPES)))
    if len(contexts) == 1 and 'dist' not in kv_type:
        return None
    if 'dist' in kv_type and not all(os.environ.get(v) for v in DIST_ENVIRONMENT):
        # Without them ps-lite aborts the process, or waits forever for a scheduler.
        raise UsageError('--kv-store %s trains in a parameter-server job: start it with '
                         'python launch.py -n WORKERS -s SERVERS python train_imagenet.py ... '
                         '(%s are not set)' % (kv_type, ', '.join(DIST_ENVIRONMENT)))
    return mx.kv.create(kv_type)


def worker_of(kv):
    """``(rank, num_workers)`` of this process."""
    return (kv.rank, kv.num_workers) if kv is not None else (0, 1)
