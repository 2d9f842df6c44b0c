"""The kvstore that joins several devices or machines, and this process's place in it."""
import os

import mxnet as mx

from alexnet_mxnet.base.errors import UsageError

# What launch.py gives every process of a distributed job: its role and where the scheduler is.
DIST_ENVIRONMENT = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_WORKER',
                    'DMLC_NUM_SERVER')

KVSTORE_TYPES = ('local', 'device', 'nccl', 'dist_sync', 'dist_async', 'dist_device_sync',
                 'dist_sync_device')



def add_kvstore_args(parser):
    """``--kv-store``."""
    group = parser.add_argument_group('kvstore')
    group.add_argument('--kv-store', default='device', choices=KVSTORE_TYPES,
                       help='how gradients are combined across devices and machines; only used '
                            'with several devices or dist_* (default: %(default)s)')
    return group


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
