"""Learning on real photos: AlexNet from scratch on imagenette, then fine-tuned on the
ants-vs-bees set (hymenoptera) against the same recipe from scratch.

1. Converts ``imagenette2-224/train`` with a held-out 10% per class (``alexnet_mxnet.data.im2rec``,
   shorter side ``--resize``), and hymenoptera's train/val folders as they are.
2. Trains AlexNet from scratch on imagenette at ``--image-shape`` (CPU-sized 3x127x127).
3. Fine-tunes that checkpoint on hymenoptera (new 2-class fc3, fc1/fc2 kept) and trains the
   same network from scratch on hymenoptera, for the same epochs.

Each run is a ``train_imagenet.py`` command, printed with the table (run, epochs, time,
final and best val top-1); results come from the runs' metrics CSV files.

    python benchmarks/learning.py                         # ~30-35 min on 2 cores
    python benchmarks/learning.py --limit-per-class 20 --imagenette-epochs 1 --hymenoptera-epochs 1
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import csv  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DATASETS = os.path.join(os.path.dirname(REPO), 'shared', 'datasets')

from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--datasets', default=DATASETS, help='(default: %(default)s)')
    parser.add_argument('--work-dir', default=os.path.join(REPO, 'runs', 'learning'),
                        help='converted data and checkpoints (default: %(default)s)')
    parser.add_argument('--image-shape', default='3,127,127', help='(default: %(default)s)')
    parser.add_argument('--resize', type=int, default=146,
                        help='shorter side of the stored images (default: %(default)s)')
    parser.add_argument('--imagenette-epochs', type=int, default=10,
                        help='(default: %(default)s; ~2.5 min each on 2 quiet cores)')
    parser.add_argument('--hymenoptera-epochs', type=int, default=10, help='(default: %(default)s)')
    parser.add_argument('--network', default='alexnet',
                        help='alexnet-bn converges faster from scratch (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=32,
                        help='imagenette batch: 267 updates per epoch (default: %(default)s)')
    parser.add_argument('--hymenoptera-batch-size', type=int, default=16,
                        help='hymenoptera batch: 244 photos give 16 updates per epoch '
                             '(default: %(default)s)')
    parser.add_argument('--lr', type=float, default=0.01,
                        help='from-scratch lr, cosine decay after a 1-epoch warm-up '
                             '(default: %(default)s)')
    parser.add_argument('--finetune-lr', type=float, default=None,
                        help='fine-tuning lr (default: --lr, so that the two hymenoptera runs '
                             'differ only in their starting weights)')
    parser.add_argument('--limit-per-class', type=int, default=0,
                        help='use only this many photos per class (a quick check; default: all)')
    return parser


def _subset(source, dest, limit):
    """``source`` itself, or a folder of symlinks to its first ``limit`` photos per class."""
    if not limit:
        return source
    for cls in sorted(os.listdir(source)):
        folder = os.path.join(source, cls)
        if not os.path.isdir(folder):
            continue
        os.makedirs(os.path.join(dest, cls), exist_ok=True)
        for name in sorted(os.listdir(folder))[:limit]:
            link = os.path.join(dest, cls, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(folder, name), link)
    return dest


def _convert(source, prefix, resize, val_ratio=0.0, synsets=None):
    """The converter's records, reused when an earlier run made them."""
    from alexnet_mxnet.data.im2rec import convert
    split = ('train', 'val') if val_ratio else ('all',)
    names = {s: '%s_%s.rec' % (prefix, s) if val_ratio else prefix + '.rec' for s in split}
    if all(os.path.exists(p[:-4] + '.idx') for p in names.values()):
        return names
    return convert(source, prefix, val_ratio=val_ratio, resize=resize, synsets=synsets,
                   overwrite=True).records


def _train(flags):
    """Run ``train_imagenet.py FLAGS``; returns (command, seconds)."""
    command = [sys.executable, os.path.join(REPO, 'train_imagenet.py')] + [str(f) for f in flags]
    print('\n$ ' + ' '.join(shlex.quote(c) for c in command[1:]), flush=True)
    start = time.time()
    if subprocess.run(command, cwd=REPO).returncode:
        raise UsageError('this run failed (see its output above): ' + ' '.join(command[1:]))
    return command, time.time() - start


def _val_top1(prefix):
    with open(prefix + '-metrics.csv') as handle:
        rows = list(csv.DictReader(handle))
    values = [float(r['val_top1']) for r in rows]
    return values[-1], max(values)


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ('imagenette2-224/train', 'hymenoptera/train', 'hymenoptera/val'):
        if not os.path.isdir(os.path.join(args.datasets, name)):
            raise UsageError('%s not found in --datasets %s' % (name, args.datasets))
    if min(args.imagenette_epochs, args.hymenoptera_epochs) < 1:
        raise UsageError('epochs must be at least 1')
    work = os.path.abspath(args.work_dir)
    limit = args.limit_per_class
    tag = 'limit%d' % limit if limit else 'all'
    data = os.path.join(work, 'data-%s-%d' % (tag, args.resize))
    inet = _convert(_subset(os.path.join(args.datasets, 'imagenette2-224', 'train'),
                            os.path.join(data, 'src-imagenette'), limit),
                    os.path.join(data, 'imagenette'), args.resize, val_ratio=0.1,
                    synsets=os.path.join(args.datasets, 'imagenette2-224', 'synsets.txt'))
    hym = {split: _convert(_subset(os.path.join(args.datasets, 'hymenoptera', split),
                                   os.path.join(data, 'src-hym-' + split), limit),
                           os.path.join(data, 'hymenoptera_' + split), args.resize)['all']
           for split in ('train', 'val')}

    runs = os.path.join(work, 'runs-%s-%s' % (tag, time.strftime('%Y%m%d-%H%M%S')))

    def recipe(epochs, lr=None):
        """Flags every run shares: cosine lr decay after a 1-epoch warm-up."""
        return ['--network', args.network, '--image-shape', args.image_shape,
                '--initializer', 'xavier', '--rgb-std', '58.393,57.12,57.375',
                '--lr-scheduler', 'cosine', '--lr', lr or args.lr,
                '--warmup-epochs', 1 if epochs > 1 else 0, '--no-progress', '--disp-batches', 0]
    results = []
    inet_prefix = os.path.join(runs, 'imagenette-scratch')
    results.append(('imagenette, from scratch', args.imagenette_epochs, inet_prefix) + _train(
        recipe(args.imagenette_epochs) + [
            '--batch-size', args.batch_size, '--data-train', inet['train'],
            '--data-val', inet['val'], '--num-epochs', args.imagenette_epochs,
            '--model-prefix', inet_prefix]))
    hym_data = ['--batch-size', args.hymenoptera_batch_size, '--data-train', hym['train'],
                '--data-val', hym['val'], '--num-epochs', args.hymenoptera_epochs]
    tuned = os.path.join(runs, 'hymenoptera-finetuned')
    results.append(('hymenoptera, fine-tuned from imagenette', args.hymenoptera_epochs, tuned)
                   + _train(recipe(args.hymenoptera_epochs, args.finetune_lr) + hym_data + [
                       '--model-prefix', tuned, '--pretrained',
                       '%s-%04d.params' % (inet_prefix, args.imagenette_epochs)]))
    fresh = os.path.join(runs, 'hymenoptera-scratch')
    results.append(('hymenoptera, from scratch', args.hymenoptera_epochs, fresh)
                   + _train(recipe(args.hymenoptera_epochs) + hym_data
                            + ['--model-prefix', fresh]))

    print('\nAlexNet at %s on %d cores (OMP_NUM_THREADS=%s)%s\n'
          % (args.image_shape.replace(',', 'x'), os.cpu_count(), os.environ['OMP_NUM_THREADS'],
             ', %d photos per class' % limit if limit else ''))
    print('| run | epochs | time | val top-1 (final) | val top-1 (best) |')
    print('|---|---:|---:|---:|---:|')
    for name, epochs, prefix, _, seconds in results:
        final, best = _val_top1(prefix)
        print('| %s | %d | %.0f s | %.3f | %.3f |' % (name, epochs, seconds, final, best))
    print('\nCommands (from %s):' % REPO)
    for result in results:
        print('  ' + ' '.join(shlex.quote(c) for c in result[3][1:]))


if __name__ == '__main__':
    run_cli(main)
