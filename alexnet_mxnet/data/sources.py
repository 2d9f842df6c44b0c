"""What the converter can read: a folder of class folders or a stock ``.lst`` file.

Both give a ``Collection``: the items of each split (index, label, file), the folder name of
each class index, and ``[(path, reason)]`` for files left out while listing; CIFAR-10 batches
are read by ``alexnet_mxnet.data.cifar``.

What the converter writes must read back: a ``.lst`` line is ``index<TAB>label<TAB>path`` in
UTF-8, so a file whose path holds a tab, a line break or another control character, or bytes
that are not UTF-8, is left out with that reason (a class folder named so is an error).
"""
import math
import os
import re
from collections import defaultdict, namedtuple

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.imagefile import (IMAGE_EXTENSIONS, find_images, identity, is_image_name,
                              printable)

# ``path``: the file read (or a description for in-memory images); ``lst_path``: what the
# output .lst records for it; ``pixels``: a BGR array when the image is not a file.
Item = namedtuple('Item', 'index label path lst_path pixels')
Collection = namedtuple('Collection', 'splits class_folders skipped', defaults=((),))

# Record labels are float32: integers are exact only below 2**24. Record ids are uint64.
MAX_LABEL = 2 ** 24
MAX_INDEX = 2 ** 64
# Characters a .lst line (or any line of the converter's text files) cannot hold: control
# characters (tab, line breaks, ...), Unicode line separators, undecodable file-name bytes.
_UNSAFE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')


def name_problem(path):
    """Why ``path`` cannot be written into a .lst line, or None."""
    unsafe = _UNSAFE.search(path)
    if unsafe is None:
        return None
    if '\ud800' <= unsafe.group() <= '\udfff':
        return 'its name is not UTF-8, which a .lst file is: rename it'
    return ('its name holds a tab, line break or other control character, which a .lst line '
            'cannot: rename it')


def clean_name(name):
    """A class name fit for one field of a line: whitespace runs (tabs, line breaks) become
    one space, other control characters go."""
    return _UNSAFE.sub('', ' '.join(name.split()))


def _visible(names):
    return sorted(name for name in names if not name.startswith('.'))


def read_class_folders(root):
    """ImageNet layout: every sub-folder of ``root`` is a class (index = sorted position)."""
    entries = _visible(os.listdir(root))
    classes = [name for name in entries if os.path.isdir(os.path.join(root, name))]
    stray = [name for name in entries if name not in classes and is_image_name(name)]
    if stray:
        raise UsageError('%s holds images outside class folders (%s...): move them into a '
                         'folder named after their class' % (root, printable(stray[0])))
    if not classes:
        raise UsageError('%s has no class folders (expected one sub-folder of images per class)'
                         % root)
    bad = next((name for name in classes if name_problem(name)), None)
    if bad is not None:
        raise UsageError('class folder %s: %s' % (
            printable(os.path.join(root, bad)), name_problem(bad).replace('its name', 'the name')))
    # Every class folder (and the root) counts as read up front: a link from one class into
    # another, or up to the root, is reported instead of mixing classes.
    identities = {}
    for name in classes:
        other = identities.setdefault(identity(os.path.join(root, name)), name)
        if other != name:
            raise UsageError('class folders %s and %s are the same folder (a link): keep one'
                             % (printable(other), printable(name)))
    visited = set(identities) | {identity(root)}
    seen, items, skipped = {}, [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        files, problems = find_images(folder, visited, seen)
        unlisted = [reason for path, reason in problems if path == folder]
        if unlisted:
            raise UsageError('class folder %s: %s' % (printable(folder), unlisted[0]))
        first = len(items)
        for path in files:
            lst_path = os.path.relpath(path, root)
            problem = name_problem(lst_path)
            if problem:
                problems.append((path, problem))
            else:
                items.append(Item(len(items), label, path, lst_path, None))
        if len(items) == first:
            raise UsageError('class folder %s has no images (%s, any letter case)%s'
                             % (printable(folder), '/'.join(IMAGE_EXTENSIONS),
                                '; %s: %s' % (printable(problems[0][0]), problems[0][1])
                                if problems else ''))
        skipped += problems
    return Collection({'all': items}, classes, skipped)


def _parse_lst_line(line, number, lst):
    fields = line.split('\t')
    if len(fields) != 3:
        raise UsageError('%s line %d: expected "index<TAB>label<TAB>path", got %d field(s)'
                         % (lst, number, len(fields)))
    try:
        index, label = int(fields[0].strip()), float(fields[1].strip())
    except ValueError:
        raise UsageError('%s line %d: index and label must be numbers' % (lst, number))
    if not 0 <= index < MAX_INDEX:
        raise UsageError('%s line %d: index %d is outside 0..2^64-1 (record ids are unsigned '
                         '64-bit numbers)' % (lst, number, index))
    if not (math.isfinite(label) and label == int(label) and 0 <= label < MAX_LABEL):
        raise UsageError('%s line %d: label %s is not a class index (an integer 0 .. %d)'
                         % (lst, number, fields[1].strip(), MAX_LABEL - 1))
    if not fields[2]:
        raise UsageError('%s line %d: empty path' % (lst, number))
    return index, int(label), fields[2]


def _lst_lines(lst):
    """``(number, text)`` of the non-empty lines of ``lst``, decoded as UTF-8."""
    with open(lst, 'rb') as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode('utf-8').rstrip('\n').rstrip('\r')
            except UnicodeDecodeError as err:
                raise UsageError('%s line %d is not UTF-8 text (byte 0x%02x): save the list as '
                                 'UTF-8' % (lst, number, raw[err.start]))
            if line.strip():
                yield number, line


def read_lst(lst, root=None):
    """A stock im2rec list (``index\\tlabel\\tpath``); relative paths are taken from ``root``
    (default: the folder holding the list)."""
    root = os.path.dirname(os.path.abspath(lst)) if root is None else root
    if not os.path.isdir(root):
        raise UsageError('image root %s is not a folder' % root)
    items, seen, skipped = [], set(), []
    for number, line in _lst_lines(lst):
        index, label, path = _parse_lst_line(line, number, lst)
        if index in seen:
            raise UsageError('%s line %d: index %d appears twice' % (lst, number, index))
        seen.add(index)
        problem = name_problem(path)
        if problem:
            skipped.append((os.path.join(root, path), problem))
        else:
            items.append(Item(index, label, os.path.join(root, path), path, None))
    if not items:
        raise UsageError('%s lists no images' % lst)
    folders = defaultdict(set)
    for item in items:
        folders[item.label].add(os.path.dirname(item.lst_path))
    num_classes = max(folders) + 1
    return Collection({'all': items}, [_folder_of(folders[label], label)
                                       for label in range(num_classes)], skipped)


def _folder_of(folders, label):
    """The one folder holding every image of ``label``, else the label number itself."""
    return next(iter(folders)) if len(folders) == 1 and '' not in folders else str(label)


def read_synsets(path):
    """``{folder: readable name}`` from lines like ``n01440764 tench`` (space or tab)."""
    if not os.path.isfile(path):
        raise UsageError('synset file %s not found' % path)
    names = {}
    try:
        with open(path, encoding='utf-8') as handle:
            for line in handle:
                parts = line.strip().split(None, 1)
                if parts:
                    names[parts[0]] = clean_name(parts[-1]) or parts[0]
    except UnicodeDecodeError:
        raise UsageError('synset file %s is not UTF-8 text: save it as UTF-8' % path)
    return names
