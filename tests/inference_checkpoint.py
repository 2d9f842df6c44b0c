"""A small real checkpoint for the inference tests: AlexNet at 67x67 trained briefly on
imagenette photos (10 classes), saved with alexnet_mxnet.base.checkpoint like the trainer does.

Built once per test session (cached on disk under pytest's base temp directory, so every
test module that asks gets the same files).
"""
import os
from dataclasses import dataclass

import cv2
import mxnet as mx
import numpy as np
import pytest

import iterators
import symbols
from alexnet_mxnet.base.checkpoint import save_checkpoint, write_sidecar
from alexnet_mxnet.data.im2rec import convert

IMAGE_SHAPE = (3, 67, 67)
SIDE = 80                 # photos are stored 80x80: the center/corner crops differ
TRAIN_PER_CLASS = 16
VAL_PER_CLASS = 3         # 30 val records: not a multiple of the test batch sizes
EPOCHS = 6
BATCH = 16


@dataclass
class Checkpoint:
    prefix: str
    epoch: int
    train_rec: str
    val_rec: str
    val_folder: str        # the val photos as files (exact bytes of the val records)
    class_names: list


def _write_photos(datasets_dir, root, per_class, skip):
    source = os.path.join(datasets_dir, 'imagenette2-224', 'train')
    for synset in sorted(d for d in os.listdir(source) if d.startswith('n')):
        names = sorted(os.listdir(os.path.join(source, synset)))[skip:skip + per_class]
        os.makedirs(os.path.join(root, synset))
        for name in names:
            bgr = cv2.imread(os.path.join(source, synset, name), cv2.IMREAD_COLOR)
            small = cv2.resize(bgr, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
            cv2.imwrite(os.path.join(root, synset, name[:-5] + '.jpg'), small)
    return os.path.join(source, '..', 'synsets.txt')


def _train(train_rec, num_classes):
    mx.random.seed(0)
    np.random.seed(0)
    sym = symbols.get_symbol('alexnet', num_classes=num_classes, image_shape=IMAGE_SHAPE)
    train = iterators.get_train_iter(train_rec, BATCH, IMAGE_SHAPE, pca_noise=0.0, seed=0)
    module = mx.mod.Module(sym, context=mx.cpu())
    module.fit(train, num_epoch=EPOCHS, initializer=mx.init.Xavier(magnitude=2.0),
               optimizer='sgd', optimizer_params=dict(learning_rate=0.01, momentum=0.9, wd=5e-4))
    return sym, module.get_params()


def build(datasets_dir, root):
    """The checkpoint under ``root`` (made once; later calls reuse the finished files)."""
    prefix = os.path.join(root, 'ckpt', 'alexnet')
    done = os.path.join(root, 'DONE')
    val_folder = os.path.join(root, 'val_photos')
    if not os.path.exists(done):
        synsets = _write_photos(datasets_dir, os.path.join(root, 'train_photos'), TRAIN_PER_CLASS, 0)
        _write_photos(datasets_dir, val_folder, VAL_PER_CLASS, TRAIN_PER_CLASS)
        train = convert(os.path.join(root, 'train_photos'), os.path.join(root, 'rec', 'train'),
                        pass_through=True, synsets=synsets, progress=False)
        val = convert(val_folder, os.path.join(root, 'rec', 'val'), pass_through=True,
                      synsets=synsets, progress=False)
        sym, (arg_params, aux_params) = _train(train.records['all'], len(train.class_names))
        save_checkpoint(prefix, EPOCHS, sym, arg_params, aux_params)
        write_sidecar(prefix, dict(network='alexnet', num_classes=len(train.class_names),
                                   image_shape=list(IMAGE_SHAPE), mean_rgb=list(iterators.MEAN_RGB),
                                   std_rgb=None, class_names=train.class_names, dtype='float32',
                                   epoch=EPOCHS))
        assert val.class_names == train.class_names
        open(done, 'w').close()
    names = [line.rstrip('\n').split('\t')[-1]
             for line in open(os.path.join(root, 'rec', 'train_labels.txt'), encoding='utf-8')]
    return Checkpoint(prefix, EPOCHS, os.path.join(root, 'rec', 'train.rec'),
                      os.path.join(root, 'rec', 'val.rec'), val_folder, names)


@pytest.fixture(scope='module')
def ckpt(datasets_dir, tmp_path_factory):
    """The ``Checkpoint``, built in a folder shared by the whole pytest session (import this
    fixture into a test module to use it)."""
    root = tmp_path_factory.getbasetemp() / 'inference-checkpoint'
    root.mkdir(exist_ok=True)
    return build(datasets_dir, str(root))
