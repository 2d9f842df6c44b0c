"""Input pipelines: RecordIO train/val iterators, 10-crop evaluation, synthetic data."""
from iterators.normalize import MEAN_RGB, STD_RGB
from iterators.recordfile import check_record_file
from iterators.record import get_rec_iters, get_train_iter, get_val_iter
from iterators.synthetic import SyntheticIter

__all__ = ['MEAN_RGB', 'STD_RGB', 'check_record_file', 'get_train_iter', 'get_val_iter',
           'get_rec_iters', 'SyntheticIter']
