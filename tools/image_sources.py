"""What the converter can read: a folder of class folders or a stock ``.lst`` file.

Both give a ``Collection``: the items of each split (index, label, file) and the
folder name of each class index; CIFAR-10 batches are read by ``tools.cifar``.
"""
import os
from collections import namedtuple

from engine.errors import UsageError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')

# ``path``: the file read (or a description for in-memory images); ``lst_path``: what the
# output .lst records for it; ``pixels``: a BGR array when the image is not a file.
Item = namedtuple('Item', 'index label path lst_path pixels')
Collection = namedtuple('Collection', 'splits class_folders')


def is_image_name(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _visible(names):
    return sorted(name for name in names if not name.startswith('.'))


def _images_below(folder):
    """Image files anywhere below ``folder``, sorted, as paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = _visible(dirnames)
        for name in _visible(filenames):
            if is_image_name(name):
                found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)


def read_class_folders(root):
    """ImageNet layout: every sub-folder of ``root`` is a class (index = sorted position)."""
    entries = _visible(os.listdir(root))
    classes = [name for name in entries if os.path.isdir(os.path.join(root, name))]
    stray = [name for name in entries if name not in classes and is_image_name(name)]
    if stray:
        raise UsageError('%s holds images outside class folders (%s...): move them into a '
                         'folder named after their class' % (root, stray[0]))
    if not classes:
        raise UsageError('%s has no class folders (expected one sub-folder of images per class)'
                         % root)
    items = []
    for label, name in enumerate(classes):
        files = _images_below(os.path.join(root, name))
        if not files:
            raise UsageError('class folder %s has no images (%s, any letter case)'
                             % (os.path.join(root, name), '/'.join(IMAGE_EXTENSIONS)))
        for rel in files:
            lst_path = os.path.join(name, rel)
            items.append(Item(len(items), label, os.path.join(root, lst_path), lst_path, None))
    return Collection({'all': items}, classes)


def _parse_lst_line(line, number, lst):
    fields = line.rstrip('\n').split('\t')
    if len(fields) != 3:
        raise UsageError('%s line %d: expected "index<TAB>label<TAB>path", got %d field(s)'
                         % (lst, number, len(fields)))
    try:
        index, label = int(fields[0].strip()), float(fields[1].strip())
    except ValueError:
        raise UsageError('%s line %d: index and label must be numbers' % (lst, number))
    if label < 0 or label != int(label):
        raise UsageError('%s line %d: label %s is not a class index (0, 1, 2, ...)'
                         % (lst, number, fields[1].strip()))
    return index, int(label), fields[2]


def read_lst(lst, root=None):
    """A stock im2rec list (``index\\tlabel\\tpath``); relative paths are taken from ``root``
    (default: the folder holding the list)."""
    root = os.path.dirname(os.path.abspath(lst)) if root is None else root
    if not os.path.isdir(root):
        raise UsageError('image root %s is not a folder' % root)
    items, seen = [], set()
    with open(lst, encoding='utf-8') as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            index, label, path = _parse_lst_line(line, number, lst)
            if index in seen:
                raise UsageError('%s line %d: index %d appears twice' % (lst, number, index))
            seen.add(index)
            items.append(Item(index, label, os.path.join(root, path), path, None))
    if not items:
        raise UsageError('%s lists no images' % lst)
    num_classes = max(item.label for item in items) + 1
    return Collection({'all': items}, [_folder_of(items, label) for label in range(num_classes)])


def _folder_of(items, label):
    """The one folder holding every image of ``label``, else the label number itself."""
    folders = {os.path.dirname(item.lst_path) for item in items if item.label == label}
    return folders.pop() if len(folders) == 1 and '' not in folders else str(label)


def read_synsets(path):
    """``{folder: readable name}`` from lines like ``n01440764 tench`` (space or tab)."""
    if not os.path.isfile(path):
        raise UsageError('synset file %s not found' % path)
    names = {}
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            parts = line.strip().split(None, 1)
            if parts:
                names[parts[0]] = parts[1] if len(parts) > 1 else parts[0]
    return names
