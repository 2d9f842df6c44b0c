"""Class names: the converter's labels file ``PREFIX_labels.txt`` (``index<TAB>folder<TAB>name``
per class, UTF-8) or a plain list, read in one place for training and inference."""
import os
import re

from alexnet_mxnet.base.errors import UsageError


def labels_file_for(path_rec):
    """The converter's ``{prefix}_labels.txt`` beside ``{prefix}[_train|_val].rec``, or None."""
    stem = os.path.splitext(path_rec)[0]
    for candidate in (stem + '_labels.txt', re.sub(r'_(train|val)$', '', stem) + '_labels.txt'):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_labels_file(path):
    """Class names by label index: the converter's ``index<TAB>folder<TAB>name`` lines, or a
    plain list with one name per line."""
    if os.path.isdir(path):
        raise UsageError('%s is a folder, not a file of class names' % path)
    if not os.path.isfile(path):
        raise UsageError('class names file %s not found' % path)
    try:
        with open(path, encoding='utf-8') as handle:
            lines = [(number, line.rstrip('\n')) for number, line in enumerate(handle, 1)
                     if line.strip()]
    except UnicodeDecodeError as err:
        raise UsageError('%s is not UTF-8 text (byte %d): save it as UTF-8, one class per line'
                         % (path, err.start)) from None
    if not any('\t' in line for _, line in lines):
        return [line for _, line in lines]
    names = {}
    for number, line in lines:
        fields = line.split('\t')
        if len(fields) < 2 or not fields[0].isdigit():
            raise UsageError('%s line %d is not "index<TAB>folder<TAB>name"' % (path, number))
        names[int(fields[0])] = fields[-1]
    if sorted(names) != list(range(len(names))):
        raise UsageError('%s does not number its classes 0..%d' % (path, len(names) - 1))
    return [names[i] for i in range(len(names))]


def labels_beside(path_rec):
    """Class names from the converter's labels file beside ``path_rec``, or None when there
    is none."""
    path = labels_file_for(path_rec)
    return read_labels_file(path) if path else None
