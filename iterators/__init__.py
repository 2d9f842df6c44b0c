"""Input pipelines: RecordIO train/val iterators, batch augmentation (random erasing, soft
labels with mixup/cutmix), 10-crop evaluation, synthetic data."""
from iterators.args import (add_augment_args, add_data_args, add_normalize_args,
                            check_augment_args, data_iter_kwargs)
from iterators.mixing import soft_label_iter
from iterators.normalize import MEAN_RGB, STD_RGB
from iterators.record import get_rec_iters, get_train_iter, get_val_iter
from iterators.recordfile import check_record_file, classes_of_part
from iterators.synthetic import SyntheticIter
from iterators.tencrop import TenCropIter

__all__ = ['MEAN_RGB', 'STD_RGB', 'check_record_file', 'classes_of_part', 'get_train_iter',
           'get_val_iter', 'get_rec_iters', 'soft_label_iter', 'SyntheticIter', 'TenCropIter',
           'add_data_args', 'add_normalize_args', 'add_augment_args', 'check_augment_args',
           'data_iter_kwargs']
