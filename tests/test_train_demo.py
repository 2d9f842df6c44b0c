"""The README's first command, shortened: with no data flags train_imagenet.py trains on the
digits demo and learns far beyond chance (10%) within a few epochs."""
import csv
import json

import pytest

from tests.fit_helpers import run_train


@pytest.mark.slow
def test_demo_default_learns(tmp_path):
    prefix = str(tmp_path / 'demo')
    proc = run_train(['--num-epochs', '4', '--lr-step-epochs', '', '--model-prefix', prefix,
                      '--no-progress'], timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(prefix + '-metrics.csv') as handle:
        rows = list(csv.DictReader(handle))
    assert [r['epoch'] for r in rows] == ['1', '2', '3', '4']
    assert max(float(r['val_top1']) for r in rows) >= 0.5, rows
    meta = json.load(open(prefix + '-meta.json'))
    assert meta['class_names'] == [str(d) for d in range(10)]
    assert meta['image_shape'] == [3, 67, 67] and meta['num_classes'] == 10
    assert 'Validation-top1=' in proc.stderr
