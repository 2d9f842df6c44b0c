"""Learning on real photos: AlexNet from scratch on imagenette, scored on photos that neither
training nor any choice saw, then fine-tuned on the ants-vs-bees set (hymenoptera) against the
same recipe from scratch.

1. Converts ``imagenette2-224/train`` into three disjoint stratified splits (``--val-ratio``
   and ``--test-ratio`` of every class, seed ``--split-seed``; shorter side ``--resize``):
   train, val (per-epoch monitoring and choices: the best epoch, raw or averaged weights)
   and test (the report only); hymenoptera's train/val folders as they are; and, with
   ``--extra-val DIR``, a folder of class folders named like imagenette's (synset or class
   name), converted with imagenette's labels.
2. Trains AlexNet from scratch on imagenette at ``--image-shape`` (CPU-sized 3x127x127) with
   ``RECIPE`` (plus ``--recipe-flags``), then scores its ``P-best.params`` with ``score.py`` on
   the test split and the extra folder, center crop and 10 crops.
3. Fine-tunes that checkpoint on hymenoptera (new 2-class fc3, fc1/fc2 kept) and trains the
   same network from scratch on hymenoptera, for the same epochs.

It prints one table (run, epochs, minutes, val top-1, test and extra-val top-1) and every
command it ran; results come from the runs' sidecars and score.py's JSON.

    python benchmarks/learning.py                         # ~40 min on 2 cores
    python benchmarks/learning.py --limit-per-class 20 --imagenette-epochs 1 --hymenoptera-epochs 1
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DATASETS = os.path.join(os.path.dirname(REPO), 'shared', 'datasets')

from alexnet_mxnet.base.argtypes import FRACTION, POSITIVE, POSITIVE_INT  # noqa: E402
from alexnet_mxnet.base.checkpoint import read_sidecar  # noqa: E402
from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402
from alexnet_mxnet.data.im2rec import convert  # noqa: E402
from alexnet_mxnet.data.sources import read_class_folders  # noqa: E402

# The training recipe of every run, in one place (train_imagenet.py flags; --recipe-flags adds
# to or overrides them), chosen on a validation split of imagenette's train photos (README,
# "Choosing the recipe"): AlexNet with batch norm, Xavier start on standardised pixels, SGD
# momentum 0.9 and weight decay 5e-4 (the defaults), batch 64 at lr 0.08 with a 2-epoch warm-up
# then cosine decay, label smoothing 0.1, random-resized crops of 25-100% of the image.
# START and SCHEDULE are also benchmarks/compression.py's, for its accuracy runs.
START = ['--initializer', 'xavier', '--rgb-std', '58.393,57.12,57.375']
WARMUP_EPOCHS = 2
SCHEDULE = ['--lr-scheduler', 'cosine', '--warmup-epochs', str(WARMUP_EPOCHS),
            '--label-smoothing', '0.1']
RECIPE = (['--network', 'alexnet-bn'] + START + SCHEDULE
          + ['--lr', '0.08', '--batch-size', '64', '--random-resized-crop', '--rrc-scale', '0.25,1'])
# hymenoptera's 244 training photos: batch 16 gives 16 updates per epoch; its lr is the
# recipe's scaled by batch (the linear scaling rule), the same for both hymenoptera runs.
HYMENOPTERA_BATCH = 16


def short_run_warmup(epochs):
    """Flags that shorten the recipe's warm-up for a run of ``epochs`` too short for it (quick
    checks): train_imagenet.py needs at least one epoch after the warm-up."""
    return [] if epochs > WARMUP_EPOCHS else ['--warmup-epochs', str(max(epochs - 1, 0))]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--datasets', default=DATASETS, help='(default: %(default)s)')
    parser.add_argument('--work-dir', default=os.path.join(REPO, 'runs', 'learning'),
                        help='converted data and checkpoints (default: %(default)s)')
    parser.add_argument('--image-shape', default='3,127,127', help='(default: %(default)s)')
    parser.add_argument('--resize', type=POSITIVE_INT, default=146,
                        help='shorter side of the stored images (default: %(default)s)')
    parser.add_argument('--imagenette-epochs', type=POSITIVE_INT, default=42,
                        help='(default: %(default)s; about 80 s each on 2 quiet cores)')
    parser.add_argument('--hymenoptera-epochs', type=POSITIVE_INT, default=10,
                        help='(default: %(default)s)')
    parser.add_argument('--recipe-flags', default='', metavar='"FLAGS"',
                        help='train_imagenet.py flags added to RECIPE for every run (later '
                             'ones win), e.g. "--network alexnet-bn --mixup 0.2 --model-ema '
                             '0.999"')
    parser.add_argument('--finetune-lr', type=POSITIVE, default=None,
                        help='fine-tuning lr (default: the recipe\'s scaled to batch %d, as for the '
                             'run from scratch, so that the two hymenoptera runs differ only in '
                             'their starting weights)' % HYMENOPTERA_BATCH)
    parser.add_argument('--val-ratio', type=FRACTION, default=0.1,
                        help='imagenette photos per class for validation (default: %(default)s)')
    parser.add_argument('--test-ratio', type=FRACTION, default=0.1,
                        help='imagenette photos per class held out for the report '
                             '(default: %(default)s)')
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the splits (default: %(default)s)')
    parser.add_argument('--extra-val', default=None, metavar='DIR',
                        help='also score on this folder of class folders named like '
                             'imagenette\'s (synset, e.g. n01440764, or class name, e.g. '
                             '"tench"; any subset of the classes)')
    parser.add_argument('--limit-per-class', type=POSITIVE_INT, default=None,
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


def _convert(source, prefix, resize, splits=('all',), **kwargs):
    """``{split: .rec}`` of the converter, reused when an earlier run made them."""
    names = {s: prefix + ('.rec' if s == 'all' else '_%s.rec' % s) for s in splits}
    if all(os.path.exists(p[:-4] + '.idx') for p in names.values()):
        return names
    return convert(source, prefix, resize=resize, overwrite=True, progress=False,
                   **kwargs).records


def _labelled_like(folder, labels_path, prefix, resize):
    """``folder``'s class folders converted with the labels of ``labels_path`` (the
    converter's ``index<TAB>folder<TAB>name``), matched by folder or class name."""
    def key(name):        # 'English_springer' or 'english springer'
        return ' '.join(name.replace('_', ' ').lower().split())
    index = {}
    with open(labels_path, encoding='utf-8') as handle:
        for line in handle:
            number, name, readable = line.rstrip('\n').split('\t')
            index[key(name)] = index[key(readable)] = int(number)
    found = read_class_folders(folder)
    unknown = [name for name in found.class_folders if key(name) not in index]
    if unknown:
        raise UsageError('--extra-val class folder %r is not an imagenette class: name each '
                         'folder by synset (e.g. n01440764) or class name (e.g. tench)'
                         % unknown[0])
    labels = [index[key(name)] for name in found.class_folders]
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    lst = prefix + '-source.lst'
    with open(lst, 'w', encoding='utf-8') as handle:
        for item in found.splits['all']:
            handle.write('%d\t%d\t%s\n' % (item.index, labels[item.label], item.lst_path))
    return convert(lst, prefix, root=folder, resize=resize, overwrite=True,
                   progress=False).records['all']


def _run(script, flags, capture=False):
    """``python SCRIPT FLAGS`` in the repository; returns (command, seconds, stdout if
    ``capture``)."""
    command = ['python', script] + [str(f) for f in flags]
    print('\n$ ' + _shown(command), flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable] + command[1:], cwd=REPO, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode:
        raise UsageError('this command failed (see its output above): ' + _shown(command))
    return command, time.time() - start, proc.stdout


def _last(flags, name):
    """The value of the last ``name`` in a train_imagenet.py flag list (later flags win)."""
    values = [value for flag, value in zip(flags, flags[1:] + ['']) if flag == name]
    values += [flag.split('=', 1)[1] for flag in flags if flag.startswith(name + '=')]
    if not values:
        raise UsageError('the recipe has no %s' % name)
    return values[-1]


def _shown(command):
    return ' '.join(shlex.quote(c) for c in command)


def _score(params, rec, out_dir, ten_crop, commands):
    """score.py's top-1 of ``params`` on ``rec`` (its command added to ``commands``)."""
    flags = ['--params', params, '--data-val', rec, '--out-dir', out_dir, '--json',
             '--no-progress'] + (['--ten-crop'] if ten_crop else [])
    os.makedirs(out_dir, exist_ok=True)
    command, _, out = _run('score.py', flags, capture=True)
    commands.append(command)
    return json.loads(out)['top1']


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ('imagenette2-224/train', 'hymenoptera/train', 'hymenoptera/val'):
        if not os.path.isdir(os.path.join(args.datasets, name)):
            raise UsageError('%s not found in --datasets %s' % (name, args.datasets))
    if args.extra_val and not os.path.isdir(args.extra_val):
        raise UsageError('--extra-val %s is not a folder' % args.extra_val)
    recipe = RECIPE + shlex.split(args.recipe_flags)
    work = os.path.abspath(args.work_dir)
    limit = args.limit_per_class
    tag = 'limit%d' % limit if limit else 'all'
    data = os.path.join(work, 'data-%s-%d-split%g-%g-seed%d' % (
        tag, args.resize, args.val_ratio, args.test_ratio, args.split_seed))
    inet = _convert(_subset(os.path.join(args.datasets, 'imagenette2-224', 'train'),
                            os.path.join(data, 'src-imagenette'), limit),
                    os.path.join(data, 'imagenette'), args.resize, ('train', 'val', 'test'),
                    val_ratio=args.val_ratio, test_ratio=args.test_ratio, seed=args.split_seed,
                    synsets=os.path.join(args.datasets, 'imagenette2-224', 'synsets.txt'))
    hym = {split: _convert(_subset(os.path.join(args.datasets, 'hymenoptera', split),
                                   os.path.join(data, 'src-hym-' + split), limit),
                           os.path.join(data, 'hymenoptera_' + split), args.resize)['all']
           for split in ('train', 'val')}
    runs = os.path.join(work, 'runs-%s-%s' % (tag, time.strftime('%Y%m%d-%H%M%S')))
    extra = (_labelled_like(args.extra_val, os.path.join(data, 'imagenette_labels.txt'),
                            os.path.join(runs, 'extra-val'), args.resize)
             if args.extra_val else None)
    os.makedirs(runs, exist_ok=True)

    def train(prefix, epochs, flags):
        """Train with the recipe (its warm-up shortened for a short run)."""
        warmup = short_run_warmup(epochs)
        command, seconds, _ = _run('train_imagenet.py', recipe + warmup + flags + [
            '--image-shape', args.image_shape, '--num-epochs', epochs, '--model-prefix',
            prefix, '--no-progress', '--disp-batches', 0])
        return command, seconds

    results, scores = [], []
    inet_prefix = os.path.join(runs, 'imagenette-scratch')
    results.append(('imagenette, from scratch', args.imagenette_epochs, inet_prefix) + train(
        inet_prefix, args.imagenette_epochs, ['--data-train', inet['train'],
                                              '--data-val', inet['val']]))
    best = inet_prefix + '-best.params'
    held_out = {'test': _score(best, inet['test'], os.path.join(runs, 'scores-test'), False,
                               scores),
                'test 10-crop': _score(best, inet['test'], os.path.join(runs, 'scores-test'),
                                       True, scores)}
    if extra:
        held_out['extra'] = _score(best, extra, os.path.join(runs, 'scores-extra'), False,
                                   scores)
        held_out['extra 10-crop'] = _score(best, extra, os.path.join(runs, 'scores-extra'),
                                           True, scores)
    hym_lr = float(_last(recipe, '--lr')) * HYMENOPTERA_BATCH / int(_last(recipe, '--batch-size'))
    hym_data = ['--batch-size', HYMENOPTERA_BATCH, '--lr', '%g' % hym_lr,
                '--data-train', hym['train'], '--data-val', hym['val']]
    tuned = os.path.join(runs, 'hymenoptera-finetuned')
    results.append(('hymenoptera, fine-tuned from imagenette', args.hymenoptera_epochs, tuned)
                   + train(tuned, args.hymenoptera_epochs, hym_data + ['--pretrained', best] + (
                       ['--lr', args.finetune_lr] if args.finetune_lr else [])))
    fresh = os.path.join(runs, 'hymenoptera-scratch')
    results.append(('hymenoptera, from scratch', args.hymenoptera_epochs, fresh)
                   + train(fresh, args.hymenoptera_epochs, hym_data))
    _report(args, results, held_out, scores)


def _report(args, results, held_out, scores):
    limit = args.limit_per_class
    print('\nAlexNet at %s on %d cores (OMP_NUM_THREADS=%s)%s; imagenette split %g/%g/%g '
          '(seed %d); recipe: %s\n'
          % (args.image_shape.replace(',', 'x'), os.cpu_count(), os.environ['OMP_NUM_THREADS'],
             ', %d photos per class' % limit if limit else '',
             1 - args.val_ratio - args.test_ratio, args.val_ratio, args.test_ratio,
             args.split_seed, ' '.join(RECIPE + shlex.split(args.recipe_flags))))
    print('| run | epochs | minutes | val top-1 (best) | val top-1 (final) | test top-1 '
          '(center) | test top-1 (10-crop) | extra-val top-1 (center) | extra-val (10-crop) |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for number, (name, epochs, prefix, _, seconds) in enumerate(results):
        meta = read_sidecar(prefix)
        final = _final_val(prefix)
        tested = [held_out.get(key) if number == 0 else None
                  for key in ('test', 'test 10-crop', 'extra', 'extra 10-crop')]
        print('| %s | %d | %.1f | %.3f%s | %s | %s |' % (
            name, epochs, seconds / 60, meta['best_val_top1'],
            ' (epoch %d%s)' % (meta['best_epoch'], ', averaged' if meta.get('best_weights')
                               == 'ema' else ''),
            final, ' | '.join('-' if v is None else '%.3f' % v for v in tested)))
    print('\nThe test and extra-val columns score P-best.params of the imagenette run (the '
          'epoch, raw or averaged weights, that validated best) with score.py.')
    print('\nCommands (from %s):' % REPO)
    for command in [r[3] for r in results[:1]] + scores + [r[3] for r in results[1:]]:
        print('  ' + _shown(command))


def _final_val(prefix):
    with open(prefix + '-metrics.csv') as handle:
        rows = list(csv.DictReader(handle))
    return '%.3f' % float(rows[-1]['val_top1'])


if __name__ == '__main__':
    run_cli(main)
