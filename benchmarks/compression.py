"""2-bit gradient compression: bytes exchanged per step and accuracy, with and without.

Each configuration is a real job, ``launch.py -n 2 -s 1`` running ``train_imagenet.py
--kv-store dist_sync [--gc-type 2bit --gc-threshold T]`` over loopback, on .rec files made from
../shared/datasets/imagenette2-224/train (a held-out part of every class for validation).

- Bytes per step: ps-lite's own account of every message (``PS_VERBOSE=2`` logs each message's
  payload sizes): what the rank-1 worker pushes (gradients) and pulls (weights) per optimizer
  step, for the full AlexNet at 3x227x227 (62M parameters), over 4 steps (16 photos, batch 2
  per worker); rank 1 because rank 0 also pushes the initial weights, and every worker pulls
  them once before the first step (so pulls are divided by steps + 1). Without compression a
  step is one pushpull whose answer holds the weights; with it, a push and a pull (see
  ``alexnet_mxnet.train.kvstore.PushThenPull``).
- Accuracy: the same training, with and without compression, a few epochs at a small input
  (``--network``, default alexnet-bn: plain AlexNet barely leaves chance level in so few
  epochs from scratch), with ``benchmarks/learning.py``'s schedule (cosine after 2 warm-up
  epochs, label smoothing 0.1: without the warm-up, lr 0.05 diverged in epoch 1 and the net
  never left chance); the final validation top-1 and training loss from the metrics CSV.

    python benchmarks/compression.py                        # both parts, threshold 0.5
    python benchmarks/compression.py --epochs 2 --images-per-class 20   # a quick check
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: the repo's packages come first
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'datasets', 'imagenette2-224', 'train')
# ps-lite (PS_VERBOSE=2) logs a message it sends at van.cc:394 and one it receives at :419.
MESSAGE = re.compile(r'^\[worker (\d+)\] .*van\.cc:(394|419): .*Meta: (.*)$')
RANK_1 = re.compile(r'^\[worker (\d+)\] .*\[rank 1/2\]', re.M)

from alexnet_mxnet.base.cli import run_cli  # noqa: E402
from alexnet_mxnet.base.errors import UsageError  # noqa: E402
# benchmarks/learning.py (the script's folder is on sys.path)
from learning import SCHEDULE, START, short_run_warmup  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default=DEFAULT_DATA,
                        help='folder of class folders (default: %(default)s)')
    parser.add_argument('--images-per-class', type=int, default=100,
                        help='first N images of each class, 20%% held out (default: %(default)s)')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='--gc-threshold of the compressed runs (default: %(default)s)')
    parser.add_argument('--network', default='alexnet-bn',
                        help='network of the accuracy runs (default: %(default)s)')
    parser.add_argument('--lr', type=float, default=0.08,
                        help='learning rate of the accuracy runs (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=12,
                        help='epochs of the accuracy runs (default: %(default)s)')
    parser.add_argument('--image-shape', default='3,67,67',
                        help='input of the accuracy runs (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=32,
                        help='batch per worker (default: %(default)s)')
    parser.add_argument('--workdir', default=None,
                        help='keep the .rec files and logs here (default: '
                             '~/.cache/alexnet-mxnet/compression)')
    return parser


def ensure_records(data, per_class, workdir):
    """``(train.rec, val.rec)`` of the first ``per_class`` photos of every class (built once)."""
    from alexnet_mxnet.data.im2rec import convert
    prefix = os.path.join(workdir, 'imagenette-%d' % per_class)
    if os.path.isfile(prefix + '_val.idx'):
        return prefix + '_train.rec', prefix + '_val.rec'
    if not os.path.isdir(data):
        raise UsageError('image folder not found: %s (see ../shared/datasets/README.md)' % data)
    source = os.path.join(workdir, 'photos-%d' % per_class)
    for folder in sorted(os.listdir(data)):
        os.makedirs(os.path.join(source, folder), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(data, folder)))[:per_class]:
            link = os.path.join(source, folder, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(data, folder, name), link)
    result = convert(source, prefix, val_ratio=0.2, resize=256, overwrite=True)
    return result.records['train'], result.records['val']


def run_job(train_flags, gc_type, threshold, prefix, log_path, env=()):
    """One 2-worker dist_sync job; returns its log. Refuses a trainer that did not compress."""
    command = [sys.executable, os.path.join(REPO, 'launch.py'), '-n', '2', '-s', '1',
               '--env-worker', 'OMP_NUM_THREADS:1', '--env-server', 'OMP_NUM_THREADS:1']
    for pair in env:
        command += ['--env', pair]
    command += [sys.executable, os.path.join(REPO, 'train_imagenet.py'), '--kv-store',
                'dist_sync', '--gc-type', gc_type, '--gc-threshold', str(threshold),
                '--model-prefix', prefix, '--no-progress', '--disp-batches', '0'] + train_flags
    with open(log_path, 'w') as log:
        code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as log:
        text = log.read()
    if code:
        raise UsageError('the %s job failed (exit %d); its log: %s' % (gc_type, code, log_path))
    if gc_type != 'none' and 'gradient compression %s' % gc_type not in text:
        raise UsageError('the trainer did not compress (no "gradient compression" line in %s): '
                         'fit() must pass --gc-type and --gc-threshold to create_kvstore'
                         % log_path)
    return text


def worker_bytes(text):
    """``(pushed, pulled)``: payload bytes the rank-1 worker sent in pushes and received in
    answers (the weights, to a pull or, uncompressed, to a pushpull), by ps-lite's log."""
    slot = RANK_1.search(text).group(1)
    pushed = pulled = 0
    for line in text.splitlines():
        match = MESSAGE.match(line)
        if not match or match.group(1) != slot:
            continue
        direction, meta = match.group(2), match.group(3)
        size = sum(int(n) for n in re.findall(r'data_size=(\d+)', meta))
        if direction == '394' and 'request=1' in meta and 'push=1' in meta:
            pushed += size
        elif direction == '419' and 'request=0' in meta:
            pulled += size
    return pushed, pulled


def updates(prefix):
    with open(prefix + '-meta.json') as handle:
        meta = json.load(handle)
    return meta['checkpoints'][str(meta['epoch'])]['num_update']


def final_row(prefix):
    with open(prefix + '-metrics.csv') as handle:
        return list(csv.DictReader(handle))[-1]


def main(argv=None):
    args = build_parser().parse_args(argv)
    workdir = args.workdir or os.path.join(os.path.expanduser('~'), '.cache', 'alexnet-mxnet',
                                           'compression')
    os.makedirs(workdir, exist_ok=True)
    train, val = ensure_records(args.data, args.images_per_class, workdir)
    sixteen = ensure_records(args.data, 2, workdir)[0]     # 16 training photos: 4 steps
    configs = [('none', 0.5), ('2bit', args.threshold)]
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        print('| gradient compression | pushed per step | pulled per step |')
        print('|---|---|---|')
        for gc_type, threshold in configs:
            prefix = os.path.join(scratch, 'bytes-' + gc_type)
            flags = ['--data-train', sixteen, '--image-shape', '3,227,227', '--batch-size', '2',
                     '--num-epochs', '1']
            text = run_job(flags, gc_type, threshold, prefix,
                           os.path.join(workdir, 'bytes-%s.log' % gc_type), env=['PS_VERBOSE:2'])
            steps = updates(prefix)
            pushed, pulled = worker_bytes(text)
            print('| %s | %.1f MB | %.1f MB |' % (
                gc_type if gc_type == 'none' else '%s, threshold %g' % (gc_type, threshold),
                pushed / steps / 1e6, pulled / (steps + 1) / 1e6), flush=True)
        print('\n| gradient compression | final val top-1 | final train loss | seconds |')
        print('|---|---|---|---|')
        recipe = START + SCHEDULE + short_run_warmup(args.epochs)
        for gc_type, threshold in configs:
            prefix = os.path.join(scratch, 'accuracy-' + gc_type)
            flags = recipe + [
                '--data-train', train, '--data-val', val, '--image-shape', args.image_shape,
                '--network', args.network, '--lr', str(args.lr),
                '--batch-size', str(args.batch_size), '--num-epochs', str(args.epochs)]
            run_job(flags, gc_type, threshold, prefix,
                    os.path.join(workdir, 'accuracy-%s.log' % gc_type))
            row = final_row(prefix)
            print('| %s | %s | %s | %.0f |' % (
                gc_type if gc_type == 'none' else '%s, threshold %g' % (gc_type, threshold),
                row['val_top1'], row['train_loss'], float(row['wall_seconds'])), flush=True)
    print('\n%s, lr %g (%s), %d images per class (80%% train), batch %d per worker x 2 '
          'workers, %d epochs at %s; bytes: alexnet at 3x227x227; logs in %s'
          % (args.network, args.lr, ' '.join(recipe), args.images_per_class,
             args.batch_size, args.epochs, args.image_shape, workdir))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
