"""The kvstore that joins several devices or machines, and this process's place in it."""
import os

import mxnet as mx

from alexnet_mxnet.base.argtypes import POSITIVE
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train.callbacks import LOG

# What launch.py gives every process of a distributed job: its role and where the scheduler is.
DIST_ENVIRONMENT = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_WORKER',
                    'DMLC_NUM_SERVER')

KVSTORE_TYPES = ('local', 'device', 'nccl', 'dist_sync', 'dist_async', 'dist_device_sync',
                 'dist_sync_device')
# The gradient compressions MXNet 1.9.1's kvstore implements ('none': off).
GC_TYPES = ('none', '2bit')


def add_kvstore_args(parser):
    """``--kv-store``, ``--gc-type``, ``--gc-threshold``."""
    group = parser.add_argument_group('kvstore')
    group.add_argument('--kv-store', default='device', choices=KVSTORE_TYPES,
                       help='how gradients are combined across devices and machines; only used '
                            'with several devices or dist_* (default: %(default)s)')
    group.add_argument('--gc-type', default='none', choices=GC_TYPES,
                       help='gradient compression of what each worker pushes to the servers '
                            '(dist_*) or each GPU to the others (device): 2bit sends every '
                            'gradient value as -T, 0 or +T in 2 bits (16x fewer bytes) and '
                            'carries what it left out over to the next step (default: '
                            '%(default)s)')
    group.add_argument('--gc-threshold', type=POSITIVE, default=0.5, metavar='T',
                       help='the threshold T of --gc-type 2bit (default: %(default)s, MXNet\'s)')
    return group


def create_kvstore(kv_type, contexts, gc_type='none', gc_threshold=0.5):
    """A kvstore only where one is needed: several devices or distributed training, with
    gradient compression ``gc_type`` (``--gc-type``) if asked for.

    Returns ``None`` for a single local device, as ``mx.mod.Module`` would. The kvstore's
    ``rank``/``num_workers`` decide which shard of the data this worker reads.
    """
    if kv_type not in KVSTORE_TYPES:
        raise UsageError('unknown --kv-store %r; choose one of %s'
                         % (kv_type, ', '.join(KVSTORE_TYPES)))
    if gc_type not in GC_TYPES:
        raise UsageError('unknown --gc-type %r; choose one of %s' % (gc_type, ', '.join(GC_TYPES)))
    compressed = gc_type != 'none'
    if compressed and not ('dist' in kv_type or ('device' in kv_type and len(contexts) > 1)):
        raise UsageError('--gc-type %s compresses what a kvstore sends: it needs --kv-store '
                         'dist_sync (or another dist_*), or several --gpus with --kv-store device'
                         % gc_type)
    if len(contexts) == 1 and 'dist' not in kv_type:
        return None
    if 'dist' in kv_type and not all(os.environ.get(v) for v in DIST_ENVIRONMENT):
        # Without them ps-lite aborts the process, or waits forever for a scheduler.
        raise UsageError('--kv-store %s trains in a parameter-server job: start it with '
                         'python launch.py -n WORKERS -s SERVERS python train_imagenet.py ... '
                         '(%s are not set)' % (kv_type, ', '.join(DIST_ENVIRONMENT)))
    kv = mx.kv.create(kv_type)
    if compressed:      # before any key is initialised, as MXNet requires
        kv.set_gradient_compression({'type': gc_type, 'threshold': gc_threshold})
        LOG.info('gradient compression %s, threshold %g: gradients go out as 2 bits a value',
                 gc_type, gc_threshold)
        if 'dist' in kv_type:
            kv.__class__ = PushThenPull
    return kv


class PushThenPull(mx.kv.KVStore):
    """A dist kvstore whose ``pushpull`` is a push, then a pull. MXNet 1.9.1's dist kvstore
    refuses ``pushpull`` once gradient compression is set ("Compression not supported with
    PushPull"), yet ``Module.update`` calls nothing else; push then pull is what Module did
    before MXNet 1.6, and what the servers expect from a compressed push."""

    def pushpull(self, key, value, out=None, priority=0):
        self.push(key, value, priority=priority)
        if out is not None:
            self.pull(key, out=out, priority=priority)


def worker_of(kv):
    """``(rank, num_workers)`` of this process."""
    return (kv.rank, kv.num_workers) if kv is not None else (0, 1)
