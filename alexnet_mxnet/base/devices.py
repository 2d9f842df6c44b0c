"""Device contexts from ``--gpus`` / ``--cpus``: the flags and their meaning."""
import mxnet as mx

from alexnet_mxnet.base.argtypes import POSITIVE_INT
from alexnet_mxnet.base.errors import UsageError

# One CPU context by default: MXNet's CPU operators already spread one batch over every
# core with OpenMP, so splitting the batch over several CPU contexts only adds gradient
# copies. ``--cpus 2`` still exercises the multi-device path (kvstore, split batches).
DEFAULT_CPUS = 1

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


def cpu_has_bf16_instructions(cpuinfo='/proc/cpuinfo'):
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16; oneDNN emulates it,
    slower than float32, on other AVX-512 CPUs). ``None`` when the flags cannot be read."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(':', 1)[1].split() for line in f
                          if line.startswith('flags')), None)
    except OSError:
        return None
    return None if flags is None else bool({'avx512_bf16', 'amx_bf16'} & set(flags))


def check_batch_split(batch_size, contexts):
    """The global batch is split evenly over the devices."""
    if batch_size < 1:
        raise UsageError('--batch-size must be positive, got %d' % batch_size)
    if batch_size % len(contexts):
        raise UsageError('--batch-size %d is not divisible by the %d devices; use a multiple of %d'
                         % (batch_size, len(contexts), len(contexts)))


def add_device_args(parser):
    """``--gpus`` and ``--cpus``."""
    group = parser.add_argument_group('devices')
    group.add_argument('--gpus', default=None, metavar='0,1',
                       help='GPUs to use, data parallel (the batch is split across them)')
    group.add_argument('--cpus', type=POSITIVE_INT, default=None, metavar='N',
                       help='number of CPU contexts when no --gpus is given (default: %d: one '
                            'context already uses every core)' % DEFAULT_CPUS)
    return group
