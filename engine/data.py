"""Which data a run trains on: the user's RecordIO files, the digits demo, or synthetic."""
import os
import re

from engine.errors import UsageError


def labels_file_for(path_rec):
    """The converter's ``{prefix}_labels.txt`` beside ``{prefix}[_train|_val].rec``, or None."""
    stem = os.path.splitext(path_rec)[0]
    for candidate in (stem + '_labels.txt', re.sub(r'_(train|val)$', '', stem) + '_labels.txt'):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_class_names(path_rec):
    """Class names by label index from the labels file (``index<TAB>folder<TAB>name``)."""
    path = labels_file_for(path_rec)
    if path is None:
        return None
    names = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip('\n').split('\t')
            if not line.strip():
                continue
            if len(fields) < 2 or not fields[0].isdigit():
                raise UsageError('%s line %d is not "index<TAB>folder<TAB>name"' % (path, number))
            names[int(fields[0])] = fields[-1]
    if sorted(names) != list(range(len(names))):
        raise UsageError('%s does not number its classes 0..%d' % (path, len(names) - 1))
    return [names[i] for i in range(len(names))]


def demo_records(progress=True):
    """``(train.rec, val.rec, class_names)`` of the digits demo, built on first use."""
    from tools.demo_data import ensure_digits_dataset
    result = ensure_digits_dataset(progress=progress)
    return result.records['train'], result.records['val'], list(result.class_names)
