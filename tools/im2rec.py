"""Convert photos to MXNet RecordIO: ``.lst``, ``.rec`` and ``.idx`` files per split.

Sources: a folder of class folders (ImageNet layout), a stock im2rec ``.lst``
file, or a CIFAR-10 python batch folder. Beside the records it writes the
label map ``{prefix}_labels.txt`` (``index<TAB>folder<TAB>name``, shared by all
splits) and, when images were bad, ``{prefix}_skipped.txt`` (``path<TAB>reason``).

Records are written in list order whatever the number of workers, under
``*.partial`` names that are renamed only once every split is complete, ``.idx``
files last: an interrupted run leaves no ``.rec``/``.idx`` pair behind.

    python -m tools.im2rec ~/photos data/photos --val-ratio 0.1
"""
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import current_process

import cv2
import numpy as np
from mxnet.recordio import MXIndexedRecordIO
from tqdm import tqdm

from engine.cli import OneLineErrorParser, run_cli
from engine.errors import UsageError
from tools import cifar
from tools.image_encoding import EncodeSettings, make_record
from tools.image_sources import read_class_folders, read_lst, read_synsets

PARTIAL = '.partial'
_SETTINGS = None  # a worker process's EncodeSettings, set by _init_worker


@dataclass
class ConvertResult:
    """Where the outputs went and what they hold. Split keys: 'train' and 'val' with a
    split (or CIFAR-10), 'all' without one (files named ``{prefix}.rec`` etc.)."""
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


def stratified_split(items, val_ratio, seed):
    """``(train, val)``: ``val_ratio`` of every class (at least one image of a class with two
    or more, never all of it) picked with a fixed seed; both keep the input order."""
    by_class = defaultdict(list)
    for item in items:
        by_class[item.label].append(item.index)
    rng = np.random.RandomState(seed)
    val = set()
    for label in sorted(by_class):
        members = by_class[label]
        wanted = max(int(round(len(members) * val_ratio)), 1 if len(members) > 1 else 0)
        chosen = rng.permutation(len(members))[:min(wanted, len(members) - 1)]
        val.update(members[i] for i in chosen)
    return ([item for item in items if item.index not in val],
            [item for item in items if item.index in val])


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


def split_collection(collection, val_ratio, seed):
    if not val_ratio:
        return collection
    if 'all' not in collection.splits:
        raise UsageError('CIFAR-10 has its own split (data_batch_* -> train, test_batch -> val): '
                         'drop the validation ratio')
    train, val = stratified_split(collection.splits['all'], val_ratio, seed)
    return collection._replace(splits={'train': train, 'val': val})


def output_paths(prefix, splits):
    """``{split: {'lst'|'rec'|'idx': path}}``: ``{prefix}.ext`` for split 'all',
    else ``{prefix}_{split}.ext``."""
    return {split: {ext: '%s%s.%s' % (prefix, '' if split == 'all' else '_' + split, ext)
                    for ext in ('lst', 'rec', 'idx')}
            for split in splits}


def _check_settings(val_ratio, resize, quality, num_workers):
    if not 0 <= val_ratio < 1:
        raise UsageError('validation ratio must be in [0, 1), got %s' % val_ratio)
    if resize < 0:
        raise UsageError('resize must be >= 0 (0 keeps the size), got %d' % resize)
    if not 1 <= quality <= 100:
        raise UsageError('JPEG quality must be in 1..100, got %d' % quality)
    if num_workers < 1:
        raise UsageError('workers must be >= 1, got %d' % num_workers)


def _init_worker(settings):
    global _SETTINGS
    _SETTINGS = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    cv2.setNumThreads(1)


def _encode_item(item):
    return make_record(item.index, item.label, item.path, item.pixels, _SETTINGS)


def _encoded(items, settings, num_workers):
    """``make_record`` results for ``items``, in order."""
    if num_workers == 1 or current_process().daemon:  # a daemon (pool worker) cannot fork workers
        for item in items:
            yield make_record(item.index, item.label, item.path, item.pixels, settings)
        return
    chunksize = max(1, min(32, len(items) // (num_workers * 8)))
    # ProcessPoolExecutor, not multiprocessing.Pool: a dead worker raises BrokenProcessPool
    # instead of leaving the run waiting forever for its results.
    with ProcessPoolExecutor(num_workers, initializer=_init_worker, initargs=(settings,)) as pool:
        try:
            yield from pool.map(_encode_item, items, chunksize=chunksize)
        except BaseException:  # also Ctrl-C and an abandoned generator: drop the queued work
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _write_split(items, paths, settings, num_workers, bar, skipped):
    """Write one split's records to ``*.partial`` files; returns ``(written items, counts)``."""
    writer = MXIndexedRecordIO(paths['idx'] + PARTIAL, paths['rec'] + PARTIAL, 'w')
    by_index = {item.index: item for item in items}
    written = []
    try:
        for index, record, reason in _encoded(items, settings, num_workers):
            if record is None:
                skipped.append((by_index[index].path, reason))
            else:
                writer.write_idx(index, record)
                written.append(by_index[index])
            bar.update(1)
    finally:
        writer.close()
    return written, Counter(item.label for item in written)


def _write_text(path, lines):
    with open(path + PARTIAL, 'w', encoding='utf-8') as handle:
        handle.writelines(line + '\n' for line in lines)


def _lst_lines(items):
    return ['%d\t%f\t%s' % (item.index, item.label, item.lst_path) for item in items]


def _publish(paths, stale):
    """Rename every ``path.partial`` onto ``path``, .idx files last, and remove ``stale`` files
    that this run does not replace. Old .idx files go first, so an overwritten .rec never sits
    beside an .idx that does not belong to it."""
    for path in [p for p in paths if p.endswith('.idx')] + [p for p in stale if p not in paths]:
        if os.path.exists(path):
            os.remove(path)
    for path in sorted(paths, key=lambda p: p.endswith('.idx')):
        os.replace(path + PARTIAL, path)


def convert(source, prefix, *, val_ratio=0.0, seed=0, resize=256, center_crop=False, quality=95,
            pass_through=False, num_workers=None, synsets=None, overwrite=False, progress=True,
            root=None):
    """Convert ``source`` into RecordIO files named after ``prefix``; see the module docstring.

    ``resize`` sets the shorter side (0 keeps the size), ``center_crop`` then cuts the central
    square, ``pass_through`` stores the files' bytes unchanged (no resize, no re-encode),
    ``root`` is where a .lst source's relative paths start (default: the .lst's folder).
    """
    num_workers = num_workers or os.cpu_count() or 1
    _check_settings(val_ratio, resize, quality, num_workers)
    collection = split_collection(load_collection(os.fspath(source), root, pass_through),
                                  val_ratio, seed)
    prefix = os.path.abspath(os.fspath(prefix))
    paths = output_paths(prefix, collection.splits)
    labels_path, skipped_path = prefix + '_labels.txt', prefix + '_skipped.txt'
    finals = [path for split in paths.values() for path in split.values()] + [labels_path]
    existing = [path for path in finals + [skipped_path] if os.path.exists(path)]
    if existing and not overwrite:
        raise UsageError('%s already exists (use --overwrite, or overwrite=True, to replace it)'
                         % existing[0])
    os.makedirs(os.path.dirname(prefix), exist_ok=True)

    names = read_synsets(synsets) if synsets else {}
    class_names = [names.get(folder, folder) for folder in collection.class_folders]
    settings = EncodeSettings(resize, center_crop, quality, pass_through)
    start, skipped, counts = time.time(), [], {}
    total = sum(len(items) for items in collection.splits.values())
    partials = [path + PARTIAL for path in finals + [skipped_path]]
    try:
        with tqdm(total=total, unit='img', desc='im2rec', disable=not progress) as bar:
            for split, items in collection.splits.items():
                written, per_class = _write_split(items, paths[split], settings, num_workers,
                                                  bar, skipped)
                counts[split] = {label: per_class[label] for label in range(len(class_names))}
                _write_text(paths[split]['lst'], _lst_lines(written))
        if not any(sum(per_class.values()) for per_class in counts.values()):
            raise UsageError('none of the %d images could be converted (first problem: %s: %s)'
                             % (total, skipped[0][0], skipped[0][1]))
        _write_text(labels_path, ['%d\t%s\t%s' % entry
                                  for entry in zip(range(len(class_names)), collection.class_folders,
                                                   class_names)])
        if skipped:
            _write_text(skipped_path, ['%s\t%s' % entry for entry in skipped])
        _publish(finals + ([skipped_path] if skipped else []), stale=[skipped_path])
    finally:
        for path in partials:
            if os.path.exists(path):
                os.remove(path)
    return ConvertResult(
        records={split: p['rec'] for split, p in paths.items()},
        indexes={split: p['idx'] for split, p in paths.items()},
        lists={split: p['lst'] for split, p in paths.items()},
        counts=counts, skipped=skipped, labels_path=labels_path,
        skipped_path=skipped_path if skipped else None, class_names=class_names,
        class_folders=list(collection.class_folders), seconds=time.time() - start)


def build_parser():
    parser = OneLineErrorParser(
        prog='python -m tools.im2rec',
        description='Convert images to MXNet RecordIO (.lst/.rec/.idx per split), with a label '
                    'map PREFIX_labels.txt and a report of skipped bad files PREFIX_skipped.txt.')
    parser.add_argument('source', metavar='SOURCE',
                        help='folder of class folders (ImageNet layout), a stock im2rec .lst file, '
                             'or a CIFAR-10 python batch folder')
    parser.add_argument('prefix', metavar='PREFIX', help='output prefix, e.g. data/imagenette -> '
                                       'data/imagenette_train.rec (with a split) or .rec')
    parser.add_argument('--val-ratio', type=float, default=0.0, metavar='R',
                        help='stratified fraction of every class written to PREFIX_val.* '
                             '(default: %(default)s = no split)')
    parser.add_argument('--seed', type=int, default=0, metavar='N',
                        help='seed of the split (default: %(default)s)')
    parser.add_argument('--resize', type=int, default=256, metavar='N',
                        help='shorter side in pixels, 0 keeps the size (default: %(default)s)')
    parser.add_argument('--center-crop', action='store_true',
                        help='then cut the central N x N square')
    parser.add_argument('--quality', type=int, default=95, metavar='Q',
                        help='JPEG quality 1-100 (default: %(default)s)')
    parser.add_argument('--pass-through', action='store_true',
                        help='store the files unchanged: no resize, no re-encode (files are still '
                             'checked and bad ones skipped)')
    parser.add_argument('--workers', type=int, default=None, metavar='K',
                        help='encoding processes (default: all %d cores)' % (os.cpu_count() or 1))
    parser.add_argument('--synsets', default=None, metavar='FILE',
                        help='file of "folder name" lines (e.g. synsets.txt) for readable class names')
    parser.add_argument('--root', default=None, metavar='DIR',
                        help='.lst source only: folder its relative paths start from '
                             '(default: the folder holding the .lst)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='hide the progress bar')
    return parser


def summary_lines(result):
    lines = []
    for split, per_class in result.counts.items():
        lines.append('%s: %d records in %d classes -> %s' % (
            split, sum(per_class.values()), sum(1 for n in per_class.values() if n),
            result.records[split]))
    lines.append('labels: %s (%d classes)' % (result.labels_path, len(result.class_names)))
    lines.append('%.1f s, %.0f images/s' % (result.seconds, (result.num_records + len(result.skipped))
                                            / max(result.seconds, 1e-9)))
    if result.skipped:
        lines.append('skipped %d bad file(s), listed with the reason in %s'
                     % (len(result.skipped), result.skipped_path))
    else:
        lines.append('skipped 0 files')
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        result = convert(args.source, args.prefix, val_ratio=args.val_ratio, seed=args.seed,
                         resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                         pass_through=args.pass_through, num_workers=args.workers,
                         synsets=args.synsets, overwrite=args.overwrite, progress=args.progress,
                         root=args.root)
    except KeyboardInterrupt:
        raise UsageError('interrupted: no output files were written')
    print('\n'.join(summary_lines(result)))
    return result


def cli():
    """Console-script entry point (setup.py)."""
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
