"""Data pipeline benchmark: one command, one Markdown table.

Rows: conversion images/s of ``alexnet_mxnet.data.im2rec`` against MXNet's bundled
``mxnet/tools/im2rec.py`` (same image list, resize, JPEG quality and worker
count); the training iterator's decode+augment images/s with 1 and 2 threads on
the converted ``.rec``; and, for scale, the images/s AlexNet training consumes.

Both converters run as fresh processes from the same ``.lst`` (written by the
bundled script's ``--list``; its extension match lower-cases file names, so the
``.JPEG`` files are listed), after one pass that reads every file so neither
pays for a cold disk cache. Process start-up is timed for both. They run in
turn ``--repeat`` times and each keeps its fastest run (on a shared machine the
least disturbed one); the CPU seconds of that run (the converter and its
workers) are printed too, since they hardly depend on what else is running.

    python benchmarks/data.py                 # the full 9,469-image imagenette train split
    python benchmarks/data.py --limit 300     # a quick check
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import mxnet as mx  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'datasets', 'imagenette2-224', 'train')
STOCK_IM2REC = os.path.join(os.path.dirname(mx.__file__), 'tools', 'im2rec.py')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0] + ' See the module '
                                     'docstring for what is measured.')
    parser.add_argument('--data', default=DEFAULT_DATA,
                        help='folder of class folders (default: %(default)s)')
    parser.add_argument('--limit', type=int, default=0,
                        help='convert only N images, evenly spread over the list (0 = all)')
    parser.add_argument('--workers', type=int, default=2,
                        help='converter processes (default: %(default)s)')
    parser.add_argument('--resize', type=int, default=256, help='shorter side (default: %(default)s)')
    parser.add_argument('--quality', type=int, default=95, help='JPEG quality (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=64,
                        help='iterator batch (default: %(default)s)')
    parser.add_argument('--iter-images', type=int, default=3000,
                        help='images drawn from the iterator per thread count (default: %(default)s)')
    parser.add_argument('--train-batches', type=int, default=4,
                        help='timed AlexNet training batches of 32, 0 skips the row '
                             '(default: %(default)s)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='conversions per converter, taken in turn; the fastest counts '
                             '(default: %(default)s)')
    parser.add_argument('--workdir', default=None,
                        help='keep the .lst/.rec files here (default: a temporary folder, removed)')
    return parser


def timed(command, cwd=None):
    """``(wall seconds, CPU seconds)`` of ``command`` and the processes it waited for."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    subprocess.run(command, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    wall, after = time.time() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def stock_list(prefix, data, limit):
    """The bundled im2rec's ``--list`` output, cut to ``limit`` evenly spaced lines."""
    # positionals first: the bundled parser's nargs='+' --exts would swallow them
    subprocess.run([sys.executable, STOCK_IM2REC, prefix, data, '--list', '--recursive',
                    '--no-shuffle'], check=True, stdout=subprocess.DEVNULL)
    with open(prefix + '.lst', encoding='utf-8') as handle:
        lines = handle.readlines()
    if limit and limit < len(lines):
        step = len(lines) / limit
        lines = [lines[int(i * step)] for i in range(limit)]
        with open(prefix + '.lst', 'w', encoding='utf-8') as handle:
            handle.writelines(lines)
    return [line.rstrip('\n').split('\t')[-1] for line in lines]


def warm_cache(data, paths):
    for rel in paths:
        with open(os.path.join(data, rel), 'rb') as handle:
            handle.read()


def count_records(path_idx):
    with open(path_idx) as handle:
        return sum(1 for _ in handle)


def iterator_speed(path_rec, batch_size, threads, images):
    """Images/s the training iterator delivers (decode, crop, mirror, PCA noise), not counting
    the first batch."""
    from iterators import get_train_iter
    it = get_train_iter(path_rec, batch_size, (3, 227, 227), num_threads=threads)
    it.next()
    delivered, start = 0, time.time()
    while delivered < images:
        try:
            batch = it.next()
        except StopIteration:
            it.reset()
            continue
        batch.data[0].wait_to_read()
        delivered += batch_size
    return delivered, time.time() - start


def training_speed(batches, batch_size=32):
    """Images/s AlexNet (symbols 'alexnet', 3x227x227, 1000 classes) trains at on the CPU."""
    import symbols
    from iterators import SyntheticIter
    data = SyntheticIter(batch_size, (3, 227, 227), 1000, batches + 1)
    module = mx.mod.Module(symbols.get_symbol('alexnet', 1000, (3, 227, 227)), context=mx.cpu())
    module.bind(data.provide_data, data.provide_label)
    module.init_params(mx.init.Xavier())
    module.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.01, 'momentum': 0.9})
    start = None
    for batch in data:
        module.forward_backward(batch)
        module.update()
        mx.nd.waitall()
        start = start or time.time()  # the first batch (allocation) is not timed
    return batches * batch_size, time.time() - start


def _seconds(runs):
    return '/'.join('%.1f' % wall for wall, _ in runs)


def row(step, setting, images, seconds):
    return '| %s | %s | %d | %.1f | %.1f |' % (step, setting, images, seconds, images / seconds)


def run(args):
    workdir = args.workdir or tempfile.mkdtemp(prefix='data-bench-')
    stock_prefix = os.path.join(workdir, 'stock', 'imgs')
    ours_prefix = os.path.join(workdir, 'ours', 'imgs')
    for folder in (os.path.dirname(stock_prefix), os.path.dirname(ours_prefix)):
        os.makedirs(folder, exist_ok=True)
    paths = stock_list(stock_prefix, args.data, args.limit)
    warm_cache(args.data, paths)
    common = 'resize %d, quality %d, %d workers' % (args.resize, args.quality, args.workers)
    commands = {
        'stock': ([sys.executable, STOCK_IM2REC, stock_prefix, args.data, '--resize',
                   str(args.resize), '--quality', str(args.quality), '--num-thread',
                   str(args.workers)], None),
        'ours': ([sys.executable, os.path.join(REPO, 'im2rec.py'), stock_prefix + '.lst', ours_prefix,
                  '--root', args.data, '--resize', str(args.resize), '--quality',
                  str(args.quality), '--workers', str(args.workers), '--no-progress',
                  '--overwrite'], REPO)}
    runs = {name: [] for name in commands}
    for _ in range(max(args.repeat, 1)):
        for name, (command, cwd) in commands.items():
            runs[name].append(timed(command, cwd))
    (stock_seconds, stock_cpu), (ours_seconds, ours_cpu) = min(runs['stock']), min(runs['ours'])
    stock_n, ours_n = count_records(stock_prefix + '.idx'), count_records(ours_prefix + '.idx')
    lines = ['| step | setting | images | seconds | images/s |', '|---|---|---|---|---|',
             row('convert: bundled mxnet/tools/im2rec.py', common, stock_n, stock_seconds),
             row('convert: alexnet_mxnet.data.im2rec', common, ours_n, ours_seconds)]
    iter_speeds = {}
    for threads in (1, 2):
        images, seconds = iterator_speed(ours_prefix + '.rec', args.batch_size, threads,
                                         args.iter_images)
        iter_speeds[threads] = images / seconds
        lines.append(row('train iterator: decode + crop + mirror + PCA noise',
                         '%d thread(s), 3x227x227, batch %d' % (threads, args.batch_size),
                         images, seconds))
    ratios = ['conversion speed ratio alexnet_mxnet.data.im2rec / bundled: %.2f (same %d images: %s; '
              'fastest of %d runs each: alexnet_mxnet.data.im2rec %s s, bundled %s s)'
              % ((ours_n / ours_seconds) / (stock_n / stock_seconds), len(paths),
                 'yes' if stock_n == ours_n == len(paths) else 'NO', len(runs['ours']),
                 _seconds(runs['ours']), _seconds(runs['stock'])),
              'conversion CPU seconds (converter and workers, in those runs): alexnet_mxnet.data.im2rec %.1f, '
              'bundled %.1f' % (ours_cpu, stock_cpu)]
    if args.train_batches:
        images, seconds = training_speed(args.train_batches)
        lines.append(row('AlexNet training consumes', 'alexnet 3x227x227, batch 32, SGD, '
                         'OMP_NUM_THREADS=%s' % os.environ['OMP_NUM_THREADS'], images, seconds))
        ratios.append('iterator (2 threads) / training: %.1fx' % (iter_speeds[2] / (images / seconds)))
    decode_cap = max((os.cpu_count() or 1) // 2 - 1, 1)
    if decode_cap < 2:
        ratios.append("note: MXNet 1.9.1's ImageRecordIter decodes with at most max(cores/2 - 1, 1) "
                      "= %d thread(s) on this %d-core machine (its log: 'use 1 threads for "
                      "decoding'), whatever preprocess_threads asks" % (decode_cap, os.cpu_count()))
    if not args.workdir:
        shutil.rmtree(workdir)
    return lines + [''] + ratios


def main(argv=None):
    print('\n'.join(run(build_parser().parse_args(argv))))


if __name__ == '__main__':
    main()
