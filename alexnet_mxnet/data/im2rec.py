"""Convert photos to MXNet RecordIO: ``.lst``, ``.rec`` and ``.idx`` files per split.

Sources: a folder of class folders (ImageNet layout), a stock im2rec ``.lst``
file, or a CIFAR-10 python batch folder. Beside the records it writes the
label map ``{prefix}_labels.txt`` (``index<TAB>folder<TAB>name``, shared by all
splits) and, when files were left out, ``{prefix}_skipped.txt`` (``path<TAB>reason``).

Records of class folders are written in a seeded random order (``--no-shuffle``: class by
class), in list order whatever the number of workers, byte for byte as MXNet's
``MXIndexedRecordIO`` writes them. A conversion holds ``{prefix}.lock`` while it runs, writes
under temporary names private to it (``.{name}.im2rec-{pid}-{random}...partial`` in the output
folder) and renames them into place only once every split is complete, ``.idx`` files last,
never over a file that appeared meanwhile (unless overwriting): an interrupted run leaves no
``.rec``/``.idx`` pair behind, and temporaries a killed run left are removed by the next
conversion of the same prefix.

    python im2rec.py ~/photos data/photos --val-ratio 0.1
    python im2rec.py ~/photos data/photos --val-ratio 0.1 --test-ratio 0.1
"""
import errno
import glob
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.imagefile import MAX_SIDE, printable
from alexnet_mxnet.base.recordio import frame_record
from alexnet_mxnet.base.runlock import PrefixLock
from alexnet_mxnet.data import cifar
from alexnet_mxnet.data.encoding import EncodeSettings, EncoderPool
from alexnet_mxnet.data.sources import clean_name, read_class_folders, read_lst, read_synsets

PARTIAL = '.partial'


@dataclass
class ConvertResult:
    """Where the outputs went and what they hold. Split keys: 'train' and 'val' with a
    split (or CIFAR-10), and 'test' with a test ratio; 'all' without one (files named
    ``{prefix}.rec`` etc.)."""
    records: dict        # split -> .rec path
    indexes: dict        # split -> .idx path
    lists: dict          # split -> .lst path (only the images actually written)
    counts: dict         # split -> {class index: records}
    skipped: list        # [(path, reason)]
    labels_path: str
    skipped_path: str    # None when nothing was skipped
    class_names: list
    class_folders: list
    seconds: float

    @property
    def num_records(self):
        return sum(sum(per_class.values()) for per_class in self.counts.values())


def stratified_split(items, val_ratio, seed, test_ratio=0.0):
    """``{'train': ..., 'val': ..., 'test': ...}`` (only the splits asked for):
    ``val_ratio`` and ``test_ratio`` of every class (at least one image each when the class
    has more than that, never all of it) picked with a fixed seed, the rest in 'train'; every
    split keeps the input order. The val picks do not depend on ``test_ratio``."""
    by_class = defaultdict(list)
    for item in items:
        by_class[item.label].append(item.index)
    rng = np.random.RandomState(seed)
    ratios = [(split, ratio) for split, ratio in (('val', val_ratio), ('test', test_ratio))
              if ratio]
    held = {}
    for label in sorted(by_class):
        members = by_class[label]
        order, taken = rng.permutation(len(members)), 0
        for split, ratio in ratios:
            wanted = max(int(round(len(members) * ratio)), 1 if len(members) > 1 else 0)
            chosen = order[taken:min(taken + wanted, len(members) - 1)]
            held.update((members[i], split) for i in chosen)
            taken += len(chosen)
    return {split: [item for item in items if held.get(item.index, 'train') == split]
            for split in ['train'] + [split for split, _ in ratios]}


def load_collection(source, root=None, pass_through=False):
    """The collection behind ``source``: one split 'all', or CIFAR-10's 'train' and 'val'."""
    if not os.path.exists(source):
        raise UsageError('source %s does not exist' % source)
    if root is not None and not source.endswith('.lst'):
        raise UsageError('root only applies to a .lst source')
    if os.path.isdir(source) and cifar.is_cifar_folder(source):
        if pass_through:
            raise UsageError('pass-through needs image files; CIFAR-10 batches hold raw pixels')
        return cifar.read_cifar_folder(source)
    if os.path.isdir(source):
        return read_class_folders(source)
    if source.endswith('.lst'):
        return read_lst(source, root)
    raise UsageError('source %s is neither a folder (of class folders, or CIFAR-10 batches) '
                     'nor a .lst file' % source)


def split_collection(collection, val_ratio, seed, test_ratio=0.0):
    if not val_ratio and not test_ratio:
        return collection
    if 'all' not in collection.splits:
        raise UsageError('CIFAR-10 has its own split (data_batch_* -> train, test_batch -> val): '
                         'drop the validation and test ratios')
    return collection._replace(splits=stratified_split(collection.splits['all'], val_ratio,
                                                       seed, test_ratio))


def shuffled(collection, seed):
    """``collection`` with every split in a random order drawn with ``seed`` (after the split,
    so which photos each split holds does not depend on it)."""
    rng = np.random.RandomState(seed)
    return collection._replace(splits={split: [items[i] for i in rng.permutation(len(items))]
                                       for split, items in collection.splits.items()})


def output_paths(prefix, splits):
    """``{split: {'lst'|'rec'|'idx': path}}``: ``{prefix}.ext`` for split 'all',
    else ``{prefix}_{split}.ext``."""
    return {split: {ext: '%s%s.%s' % (prefix, '' if split == 'all' else '_' + split, ext)
                    for ext in ('lst', 'rec', 'idx')}
            for split in splits}


def _check_settings(val_ratio, test_ratio, resize, quality, num_workers):
    if not 0 <= val_ratio < 1:
        raise UsageError('validation ratio must be in [0, 1), got %s' % val_ratio)
    if not 0 <= test_ratio < 1 or val_ratio + test_ratio >= 1:
        raise UsageError('test ratio must be in [0, 1) and leave images for training beside '
                         'the validation ratio %s, got %s' % (val_ratio, test_ratio))
    if not 0 <= resize <= MAX_SIDE:
        raise UsageError('resize must be in 0..%d (0 keeps the size), got %d' % (MAX_SIDE, resize))
    if not 1 <= quality <= 100:
        raise UsageError('JPEG quality must be in 1..100, got %d' % quality)
    if num_workers < 1:
        raise UsageError('workers must be >= 1, got %d' % num_workers)


# --- output files ------------------------------------------------------------------------



class _Output:
    """One output file, written under a temporary name until it is published. File-system
    errors name the final path, the one the user knows."""

    def __init__(self, final, temp):
        self.final, self.temp, self.handle = final, temp, None
        with self.named_errors():
            self.handle = open(temp, 'xb')

    @contextmanager
    def named_errors(self):
        try:
            yield
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.final) from None

    def write(self, data):
        with self.named_errors():
            self.handle.write(data)

    def finish(self):
        """Flush to disk and close: a full disk shows here, not after publishing."""
        with self.named_errors():
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()

    def discard(self):
        try:
            self.handle.close()
        except OSError:
            pass
        try:
            os.remove(self.temp)
        except FileNotFoundError:
            pass


class _Outputs:
    """The files of one conversion of ``prefix``: temporaries named after this run, published
    together at the end, removed on any failure."""

    def __init__(self, prefix):
        folder, name = os.path.split(prefix)
        self.prefix, self.files = prefix, []
        self.temp_start = os.path.join(folder, '.%s.im2rec-' % name)
        self.token = '%d-%s' % (os.getpid(), secrets.token_hex(4))

    def remove_stale(self):
        """Temporaries of this prefix left by a killed run (the prefix lock is ours, so no
        live conversion owns them)."""
        for path in glob.glob(glob.escape(self.temp_start) + '*' + PARTIAL):
            os.remove(path)

    def create(self, final):
        output = _Output(final, '%s%s%s%s' % (self.temp_start, self.token,
                                               final[len(self.prefix):], PARTIAL))
        self.files.append(output)
        return output

    def write_text(self, final, lines):
        output = self.create(final)
        output.write(''.join(line + '\n' for line in lines).encode('utf-8'))
        output.finish()

    def publish(self, overwrite, stale):
        """Rename every temporary onto its final name, ``.idx`` files last. Without
        ``overwrite`` a final name that appeared meanwhile stops it, and what was already
        published is taken back. With it, old ``.idx`` files and the ``stale`` files this run
        does not replace go first, so no old ``.idx`` sits beside a new ``.rec``."""
        files = sorted(self.files, key=lambda output: output.final.endswith('.idx'))
        finals = [output.final for output in files]
        if overwrite:
            for path in [p for p in finals if p.endswith('.idx')] + [p for p in stale
                                                                    if p not in finals]:
                if os.path.lexists(path):
                    os.remove(path)
        placed = []
        try:
            for output in files:
                with output.named_errors():
                    if overwrite:
                        os.replace(output.temp, output.final)
                    else:
                        _place_new(output.temp, output.final)
                placed.append(output.final)
        except FileExistsError as err:
            for path in placed:
                os.remove(path)
            raise UsageError('%s appeared while this conversion ran (another program wrote it): '
                             'nothing was published; remove it, or use --overwrite'
                             % err.filename)
        _sync_folder(os.path.dirname(self.prefix))

    def discard(self):
        for output in self.files:
            output.discard()


def _place_new(temp, final):
    """Move ``temp`` to ``final`` unless ``final`` exists (atomically where hard links work)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), final) from None
    except OSError:                 # no hard links on this file system: check, then rename
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), final) from None
        os.rename(temp, final)
        return
    os.remove(temp)


def _sync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                        # some file systems cannot sync a folder; the files are
    finally:
        os.close(fd)


@contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM wait until the block is done, then act: clean-up and publishing
    must not be cut short, and a second Ctrl-C must not turn into a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield                       # signals only ever interrupt the main thread
        return
    received = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler is not None:     # None: set outside Python, leave it alone
            previous[number] = signal.signal(number, lambda n, frame: received.append(n))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        # A signal that came while the block cleaned up after a Ctrl-C is that stop again.
        if received and not isinstance(sys.exc_info()[1], KeyboardInterrupt):
            signal.raise_signal(received[0])


def _lst_lines(items):
    return ['%d\t%f\t%s' % (item.index, item.label, item.lst_path) for item in items]


def _report_lines(skipped):
    return ['%s\t%s' % (printable(path), printable(reason)) for path, reason in skipped]


# --- conversion --------------------------------------------------------------------------

def convert(source, prefix, *, val_ratio=0.0, seed=0, resize=256, center_crop=False, quality=95,
            pass_through=False, num_workers=None, synsets=None, overwrite=False, progress=True,
            root=None, test_ratio=0.0, shuffle=True):
    """Convert ``source`` into RecordIO files named after ``prefix``; see the module docstring.

    ``val_ratio`` and ``test_ratio`` hold out that share of every class (stratified, seed
    ``seed``) in ``{prefix}_val.*`` and ``{prefix}_test.*``. ``shuffle`` writes the records of
    a folder of class folders in an order drawn with ``seed``, as MXNet's im2rec lists them:
    distributed training reads a ``.rec`` in contiguous parts, one per worker, and records
    in class order would give each worker only some of the classes. A ``.lst`` source and
    CIFAR-10 keep their order.

    ``resize`` sets the shorter side (0 keeps the size), ``center_crop`` then cuts the central
    square, ``pass_through`` stores the files' bytes unchanged (no resize, no re-encode),
    ``root`` is where a .lst source's relative paths start (default: the .lst's folder).
    """
    num_workers = num_workers or os.cpu_count() or 1
    _check_settings(val_ratio, test_ratio, resize, quality, num_workers)
    collection = load_collection(os.fspath(source), root, pass_through)
    from_folders = os.path.isdir(os.fspath(source)) and 'all' in collection.splits
    collection = split_collection(collection, val_ratio, seed, test_ratio)
    if shuffle and from_folders:
        collection = shuffled(collection, seed)
    names = read_synsets(synsets) if synsets else {}
    class_names = [names.get(folder, clean_name(folder)) for folder in collection.class_folders]
    prefix = os.path.abspath(os.fspath(prefix))
    if os.path.exists(os.path.dirname(prefix)) and not os.path.isdir(os.path.dirname(prefix)):
        raise UsageError('output folder %s is a file, not a folder: choose another prefix'
                         % os.path.dirname(prefix))
    with PrefixLock(prefix, 'conversion'):
        outputs = _Outputs(prefix)
        outputs.remove_stale()
        paths = output_paths(prefix, collection.splits)
        labels_path, skipped_path = prefix + '_labels.txt', prefix + '_skipped.txt'
        finals = [path for split in paths.values() for path in split.values()] + [labels_path]
        existing = [path for path in finals + [skipped_path] if os.path.lexists(path)]
        if existing and not overwrite:
            raise UsageError('%s already exists (use --overwrite, or overwrite=True, to replace '
                             'it)' % existing[0])
        start, skipped, counts = time.time(), list(collection.skipped), {}
        settings = EncodeSettings(resize, center_crop, quality, pass_through)
        total = sum(len(items) for items in collection.splits.values())
        pool = EncoderPool(settings, max(1, min(num_workers, total)))
        try:
            with tqdm(total=total, unit='img', desc='im2rec', disable=not progress) as bar:
                for split, items in collection.splits.items():
                    written = _write_split(items, paths[split], pool, outputs, bar, skipped)
                    per_class = Counter(item.label for item in written)
                    counts[split] = {label: per_class[label] for label in range(len(class_names))}
                    outputs.write_text(paths[split]['lst'], _lst_lines(written))
            pool.close()            # all encoded: the workers end at the end of their pipes
            if not any(sum(per_class.values()) for per_class in counts.values()):
                raise UsageError('none of the %d images could be converted (first problem: %s: %s)'
                                 % (total, printable(skipped[0][0]), skipped[0][1]))
            outputs.write_text(labels_path, ['%d\t%s\t%s' % entry for entry in zip(
                range(len(class_names)), collection.class_folders, class_names)])
            if skipped:
                outputs.write_text(skipped_path, _report_lines(skipped))
            with _signals_deferred():
                outputs.publish(overwrite, stale=[skipped_path])
        finally:
            with _signals_deferred():
                pool.close(kill=True)          # at once, if still running
                outputs.discard()
    return ConvertResult(
        records={split: p['rec'] for split, p in paths.items()},
        indexes={split: p['idx'] for split, p in paths.items()},
        lists={split: p['lst'] for split, p in paths.items()},
        counts=counts, skipped=skipped, labels_path=labels_path,
        skipped_path=skipped_path if skipped else None, class_names=class_names,
        class_folders=list(collection.class_folders), seconds=time.time() - start)


def _write_split(items, paths, pool, outputs, bar, skipped):
    """Write one split's records; returns the items written."""
    rec, idx = outputs.create(paths['rec']), outputs.create(paths['idx'])
    written, offset = [], 0
    for item, (index, record, reason) in zip(items, pool.map(items)):
        if record is None:
            skipped.append((item.path, reason))
        else:
            framed = frame_record(record)
            rec.write(framed)
            idx.write(b'%d\t%d\n' % (index, offset))
            offset += len(framed)
            written.append(item)
        bar.update(1)
    rec.finish()
    idx.finish()
    return written
