"""Distributed scaling on one machine: 1, 2 and 4 dist_sync workers, one Markdown table.

Each configuration is a real job: ``launch.py -n N -s 1`` running ``train_imagenet.py
--kv-store dist_sync`` (CPU contexts, loopback) for one epoch on a .rec made from
../shared/datasets/imagenette2-224/train. Throughput is the sum over workers of each worker's
median Speedometer rate (the first report, which includes start-up, left out); parallel
efficiency is images/s(N) / (N x images/s(1)), batch per worker fixed (weak scaling).

Caveat: every worker, the server and the scheduler share this one machine's cores (the
workers get cores/N OpenMP threads each), so the table shows the parameter-server overhead,
not the speed-up of N machines; with 2 cores, 4 workers cannot beat 2.

    python benchmarks/scaling.py                               # 1, 2, 4 workers, AlexNet 227
    python benchmarks/scaling.py --workers 1,2 --images-per-class 8 --image-shape 3,67,67 \\
        --resize 72 --batch-size 4                             # a quick check
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'datasets', 'imagenette2-224', 'train')
SPEED = re.compile(r'^\[worker (\d+)\] .*Speed: ([0-9.]+) samples/sec')

from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from symbols.args import add_network_args  # noqa: E402
from alexnet_mxnet.train.kvstore import KVSTORE_TYPES  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0] + ' See the module '
                                     'docstring for what is measured.')
    parser.add_argument('--data', default=DEFAULT_DATA,
                        help='folder of class folders (default: %(default)s)')
    parser.add_argument('--images-per-class', type=int, default=128,
                        help='first N images of each class, 0 = all (default: %(default)s)')
    parser.add_argument('--resize', type=int, default=256,
                        help='shorter side stored in the .rec (default: %(default)s)')
    parser.add_argument('--workers', default='1,2,4',
                        help='worker counts to run (default: %(default)s)')
    parser.add_argument('--servers', type=int, default=1, help='servers (default: %(default)s)')
    parser.add_argument('--kv-store', default='dist_sync',
                        choices=[kv for kv in KVSTORE_TYPES if kv.startswith('dist')],
                        help='(default: %(default)s)')
    add_network_args(parser, source='labels')
    parser.add_argument('--batch-size', type=int, default=32,
                        help='batch per worker (default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=3600,
                        help='seconds allowed per configuration (default: %(default)s)')
    parser.add_argument('--workdir', default=None,
                        help='keep the .rec, checkpoints and logs here (default: '
                             '~/.cache/alexnet-mxnet/scaling)')
    return parser


def parse_counts(text):
    try:
        counts = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UsageError('--workers must list positive worker counts such as 1,2,4, got %r' % text)
    return counts


def ensure_records(data, images_per_class, resize, workdir):
    """The benchmark .rec (built once per subset and size, then reused)."""
    from iterators import check_record_file
    from alexnet_mxnet.data.im2rec import convert
    if not os.path.isdir(data):
        raise UsageError('image folder not found: %s (see ../shared/datasets/README.md)' % data)
    prefix = os.path.join(workdir, 'imagenette-%s-%d' % (images_per_class or 'all', resize))
    if os.path.isfile(prefix + '.idx'):
        check_record_file(prefix + '.rec')
        return prefix + '.rec'
    lines = []
    for label, folder in enumerate(sorted(os.listdir(data))):
        if not os.path.isdir(os.path.join(data, folder)):
            continue
        names = sorted(os.listdir(os.path.join(data, folder)))
        for name in names[:images_per_class or None]:
            lines.append('%d\t%d\t%s/%s' % (len(lines), label, folder, name))
    lst = prefix + '-source.lst'
    with open(lst, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    result = convert(lst, prefix, root=data, resize=resize, overwrite=True)
    return list(result.records.values())[0]


def run_config(args, rec, workers, workdir, scratch):
    """Aggregate images/s of one job, from every worker's Speedometer lines; the job's
    output goes to ``workdir/workers-N.log``, its checkpoints to ``scratch``."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    prefix = os.path.join(scratch, 'ck-%d' % workers, args.network)
    command = [sys.executable, os.path.join(REPO, 'launch.py'), '-n', str(workers),
               '-s', str(args.servers), '--timeout', str(args.timeout),
               '--env-worker', 'OMP_NUM_THREADS:%d' % threads,
               '--env-server', 'OMP_NUM_THREADS:1',
               sys.executable, os.path.join(REPO, 'train_imagenet.py'),
               '--kv-store', args.kv_store, '--data-train', rec, '--network', args.network,
               '--dtype', args.dtype, '--batch-size', str(args.batch_size),
               '--num-epochs', '1', '--data-nthreads', str(threads), '--disp-batches', '2',
               '--no-progress', '--model-prefix', prefix]
    for flag, value in (('--image-shape', args.image_shape), ('--num-classes', args.num_classes)):
        if value is not None:
            command += [flag, str(value)]
    log_path = os.path.join(workdir, 'workers-%d.log' % workers)
    with open(log_path, 'w') as log:
        code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as log:
        text = log.read()
    if code != 0:
        print('\n'.join(text.splitlines()[-15:]), file=sys.stderr)
        raise UsageError('the %d-worker job failed (exit %d); its whole log: %s'
                         % (workers, code, log_path))
    speeds = {}
    for line in text.splitlines():
        match = SPEED.match(line)
        if match:
            speeds.setdefault(int(match.group(1)), []).append(float(match.group(2)))
    if len(speeds) != workers or min(len(v) for v in speeds.values()) < 2:
        raise UsageError('too few Speedometer lines in %s: give more images per worker '
                         '(--images-per-class) or a smaller --batch-size' % log_path)
    return sum(statistics.median(v[1:]) for v in speeds.values()), threads


def main(argv=None):
    args = build_parser().parse_args(argv)
    counts = parse_counts(args.workers)
    workdir = args.workdir or os.path.join(os.path.expanduser('~'), '.cache', 'alexnet-mxnet',
                                           'scaling')
    os.makedirs(workdir, exist_ok=True)
    rec = ensure_records(args.data, args.images_per_class, args.resize, workdir)
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        for workers in tqdm(counts, desc='configurations', unit='job'):
            speed, threads = run_config(args, rec, workers, workdir, scratch)
            rows.append((workers, threads, speed))
    base = next((speed for workers, _, speed in rows if workers == 1), None)
    print('\n%s %s, batch %d per worker, %s, %d server(s), %d cores, data %s\n'
          % (args.network, args.image_shape or 'default input', args.batch_size, args.kv_store,
             args.servers, os.cpu_count() or 1, rec))
    print('| workers | OpenMP threads each | images/s (all workers) | parallel efficiency |')
    print('|---|---|---|---|')
    for workers, threads, speed in rows:
        efficiency = '%.0f%%' % (100 * speed / (workers * base)) if base else 'n/a (no 1-worker run)'
        print('| %d | %d | %.1f | %s |' % (workers, threads, speed, efficiency))
    print('\nOne machine shares its cores between all workers, the server and the scheduler: '
          'this shows the parameter-server overhead, not the speed-up of N machines.')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
