"""Tiny real-photo RecordIO files and flag lists shared by the training tests."""
import os
import subprocess
import sys

from tests.conftest import REPO

# Small, deterministic runs: 67x67 (AlexNet's smallest input), no dropout, no random
# lighting noise, one decoding thread (fixed augmentation order), no progress bar.
QUICK = ['--image-shape', '3,67,67', '--batch-size', '8', '--dropout', '0', '--pca-noise', '0',
         '--data-nthreads', '1', '--initializer', 'xavier', '--lr', '0.01', '--no-progress',
         '--disp-batches', '0', '--rgb-std', '58.393,57.12,57.375']


def tiny_photo_records(datasets_dir, out_dir, per_class=12):
    """``(train.rec, val.rec)``: ``per_class`` ants and bees photos each, 25% held out,
    converted at 72 pixels with the project's converter (labels file beside them)."""
    from tools.im2rec import convert
    source = os.path.join(out_dir, 'photos')
    for cls in ('ants', 'bees'):
        src = os.path.join(datasets_dir, 'hymenoptera', 'train', cls)
        os.makedirs(os.path.join(source, cls))
        for name in sorted(os.listdir(src))[:per_class]:
            os.symlink(os.path.join(src, name), os.path.join(source, cls, name))
    result = convert(source, os.path.join(out_dir, 'tiny'), val_ratio=0.25, resize=72,
                     progress=False, num_workers=1)
    return result.records['train'], result.records['val']


def parse(flags):
    from engine.args import build_train_parser
    return build_train_parser().parse_args([str(f) for f in flags])


def run_train(flags, **kwargs):
    """``python train_imagenet.py FLAGS`` in the repository, output captured."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, os.path.join(REPO, 'train_imagenet.py')]
                          + [str(f) for f in flags], cwd=REPO, env=env, capture_output=True,
                          text=True, **kwargs)
