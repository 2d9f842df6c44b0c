"""The input pipelines on a small RecordIO file of real photos, read back pixel by pixel."""
import argparse
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

import iterators
from alexnet_mxnet.base.errors import UsageError
from iterators.tencrop import crop_offsets

NUM_SQUARE = 20   # imagenette photos (224x224 -> 256x256): records 0..19
NUM_RECORDS = 30  # + hymenoptera photos of varied aspect ratio: records 20..29
CROP = (3, 227, 227)
FULL = (3, 256, 256)


def _photos(datasets_dir):
    root = os.path.join(datasets_dir, 'imagenette2-224', 'train')
    paths = []
    for synset in sorted(os.listdir(root))[:2]:
        folder = os.path.join(root, synset)
        paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:NUM_SQUARE // 2]]
    for cls in ('ants', 'bees'):
        folder = os.path.join(datasets_dir, 'hymenoptera', 'train', cls)
        paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:5]]
    return paths


def _write_rec(prefix, images):
    record = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    for i, bgr in enumerate(images):
        header = mx.recordio.IRHeader(0, float(i), i, 0)
        record.write_idx(i, mx.recordio.pack_img(header, bgr, quality=95, img_fmt='.jpg'))
    record.close()
    return prefix + '.rec'


@pytest.fixture(scope='module')
def rec(datasets_dir, tmp_path_factory):
    """30 photos, shorter side 256, label = record index."""
    images = []
    for path in _photos(datasets_dir):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        scale = 256 / min(bgr.shape[:2])
        size = (max(256, round(bgr.shape[1] * scale)), max(256, round(bgr.shape[0] * scale)))
        images.append(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    assert len(images) == NUM_RECORDS
    return _write_rec(str(tmp_path_factory.mktemp('rec') / 'photos'), images)


@pytest.fixture(scope='module')
def decoded(rec):
    """Each record decoded to RGB float32, the reference the iterators are checked against."""
    reader = mx.recordio.MXIndexedRecordIO(rec[:-4] + '.idx', rec, 'r')
    images = []
    for key in reader.keys:
        _, encoded = mx.recordio.unpack(reader.read_idx(key))
        images.append(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
                      .astype(np.float32))
    reader.close()
    return images


def _epoch(it):
    """[(data, labels)] of the non-filler rows of one epoch, as numpy."""
    it.reset()
    rows = []
    for batch in it:
        real = it.batch_size - batch.pad
        rows.append((batch.data[0].asnumpy()[:real], batch.label[0].asnumpy()[:real]))
    return rows


def _concat(rows):
    return np.concatenate([d for d, _ in rows]), np.concatenate([lab for _, lab in rows])


def _chw(image_hwc, mean=iterators.MEAN_RGB, std=(1, 1, 1)):
    return ((image_hwc - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1)


# ---------------------------------------------------------------- check_record_file

def test_check_record_file_counts_records(rec):
    assert iterators.check_record_file(rec) == NUM_RECORDS


def test_check_record_file_missing_or_broken_files(rec, tmp_path):
    with pytest.raises(UsageError, match='not found'):
        iterators.check_record_file(str(tmp_path / 'absent.rec'))
    data = open(rec, 'rb').read()
    no_idx = tmp_path / 'no_idx.rec'
    no_idx.write_bytes(data)
    with pytest.raises(UsageError, match=r'index file .*no_idx\.idx not found'):
        iterators.check_record_file(str(no_idx))
    index = open(rec[:-4] + '.idx').read()
    shifted = ''.join('%s\t%d\n' % (key, int(offset) + 4)
                      for key, offset in (line.split('\t') for line in index.splitlines()))
    for name, rec_bytes, idx_text, message in [
            ('truncated', data[:-1000], index, 'does not match its index'),
            ('shifted', data, shifted, 'does not match its index'),
            ('empty', b'', index, 'record file .* is empty'),
            ('emptyidx', data, '', 'index file .* is empty'),
            ('badidx', data, 'zero\n', 'not "key<TAB>offset"')]:
        (tmp_path / (name + '.rec')).write_bytes(rec_bytes)
        (tmp_path / (name + '.idx')).write_text(idx_text)
        with pytest.raises(UsageError, match=message):
            iterators.check_record_file(str(tmp_path / (name + '.rec')))
    with pytest.raises(UsageError, match='not found'):
        iterators.get_val_iter(str(no_idx), 4)


# ---------------------------------------------------------------- validation pipeline

def test_val_center_crop_minus_mean_matches_numpy(rec, decoded):
    it = iterators.get_val_iter(rec, 8, CROP)
    assert it.provide_data[0].name == 'data' and it.provide_label[0].name == 'softmax_label'
    batch = next(iter(it))
    assert batch.data[0].shape == (8,) + CROP and batch.data[0].dtype == np.float32
    assert batch.label[0].shape == (8,)
    for row in range(8):
        image = decoded[row]
        top, left = crop_offsets(image.shape[0], image.shape[1], 227, 227)[4]
        expected = _chw(image[top:top + 227, left:left + 227])
        got = batch.data[0][row].asnumpy()
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert batch.label[0][row].asscalar() == row


def test_val_std_divides_after_mean(rec):
    plain = next(iter(iterators.get_val_iter(rec, 4, CROP))).data[0].asnumpy()
    scaled = next(iter(iterators.get_val_iter(rec, 4, CROP, std_rgb=iterators.STD_RGB)))
    std = np.array(iterators.STD_RGB, np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(scaled.data[0].asnumpy(), plain / std, rtol=1e-5, atol=1e-4)


def test_val_is_identical_across_epochs_and_iterators(rec):
    it = iterators.get_val_iter(rec, 8, CROP)
    first, second = _concat(_epoch(it)), _concat(_epoch(it))
    other = _concat(_epoch(iterators.get_val_iter(rec, 8, CROP)))
    for a, b in ((first, second), (first, other)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_last_batch_pad_is_exact_and_filler_rows_are_real(rec):
    it = iterators.get_val_iter(rec, 8, CROP)
    batches = list(it)
    assert len(batches) == 4 and [b.pad for b in batches] == [0, 0, 0, 2]
    last = batches[-1].label[0].asnumpy()
    np.testing.assert_array_equal(last, [24, 25, 26, 27, 28, 29, 24, 25])
    np.testing.assert_array_equal(batches[-1].data[0][6].asnumpy(), batches[-1].data[0][0].asnumpy())
    labels = _concat(_epoch(it))[1]
    np.testing.assert_array_equal(labels, np.arange(NUM_RECORDS))


@pytest.mark.parametrize('num_parts, batch_size', [(4, 4), (3, 8), (2, 7)])
def test_val_shards_cover_every_record_once_with_equal_batch_counts(rec, num_parts, batch_size):
    seen, counts = [], set()
    for part in range(num_parts):
        it = iterators.get_val_iter(rec, batch_size, (3, 64, 64), num_parts=num_parts,
                                    part_index=part, num_threads=1)
        batches = list(it)
        counts.add(len(batches))
        seen += [lab for b in batches for lab in b.label[0].asnumpy()[:batch_size - b.pad]]
    assert len(counts) == 1
    assert sorted(seen) == list(range(NUM_RECORDS))


def test_train_shards_have_equal_batch_counts_and_cover_all(rec):
    # 30 records in 4 parts: 8, 8, 8 and 6; batch 3 -> every part gives 3 batches
    seen, counts = set(), set()
    for part in range(4):
        it = iterators.get_train_iter(rec, 3, (3, 64, 64), num_parts=4, part_index=part,
                                      num_threads=1)
        for _ in range(2):
            labels = _concat(_epoch(it))[1]
            counts.add(len(labels) // 3 + (len(labels) % 3 > 0))
            seen.update(labels.tolist())
    assert counts == {3} and seen == set(range(NUM_RECORDS))


def test_too_many_parts_is_a_usage_error(rec):
    with pytest.raises(UsageError, match='too few'):
        iterators.get_val_iter(rec, 2, (3, 64, 64), num_parts=7, part_index=0)
    with pytest.raises(UsageError, match='part_index'):
        iterators.get_val_iter(rec, 2, (3, 64, 64), num_parts=2, part_index=2)


# ---------------------------------------------------------------- training augmentation

def _square_rows(it):
    """Training rows of the square photos, in record order (shuffle off)."""
    data, labels = _concat(_epoch(it))
    np.testing.assert_array_equal(labels, np.arange(NUM_RECORDS))
    return data[:NUM_SQUARE]


def test_train_mirror_flips_some_images_and_changes_between_epochs(rec):
    # a 256 crop of the 256x256 photos leaves random mirroring as the only change
    full = _square_rows(iterators.get_val_iter(rec, 10, FULL))
    it = iterators.get_train_iter(rec, 10, FULL, pca_noise=0, shuffle=False, seed=1)
    flips = []
    for _ in range(2):
        rows = _square_rows(it)
        for got, ref in zip(rows, full):
            if np.array_equal(got, ref):
                flips.append(False)
            else:
                np.testing.assert_array_equal(got, ref[:, :, ::-1])
                flips.append(True)
    assert 0 < sum(flips) < len(flips)
    assert flips[:NUM_SQUARE] != flips[NUM_SQUARE:]


def test_train_random_crop_is_a_window_of_the_image_that_moves(rec):
    full = _square_rows(iterators.get_val_iter(rec, 10, FULL))
    it = iterators.get_train_iter(rec, 10, CROP, pca_noise=0, mirror=False, shuffle=False)
    offsets = []
    for _ in range(2):
        for got, ref in zip(_square_rows(it)[:3], full[:3]):
            found = [(y, x) for y in range(30) for x in range(30)
                     if np.array_equal(got, ref[:, y:y + 227, x:x + 227])]
            assert len(found) == 1
            offsets.append(found[0])
    assert len(set(offsets)) > 1


def test_train_pca_noise_shifts_each_channel(rec):
    full = _square_rows(iterators.get_val_iter(rec, 10, FULL))
    it = iterators.get_train_iter(rec, 10, FULL, pca_noise=0.1, mirror=False, shuffle=False)
    shifts = []
    for _ in range(2):
        diff = (_square_rows(it) - full)[:4]
        channel_shift = np.median(diff, axis=(2, 3))
        assert np.abs(channel_shift).max() > 0.5
        shifts.append(channel_shift)
    assert not np.allclose(shifts[0], shifts[1])


def test_train_colour_jitter_and_random_resized_crop(rec):
    it = iterators.get_train_iter(rec, 8, (3, 112, 112), color_jitter=0.4,
                                  random_resized_crop=True, seed=3, dtype='float16')
    assert it.provide_data[0].shape == (8, 3, 112, 112)
    epochs = [_concat(_epoch(it)) for _ in range(2)]
    for data, labels in epochs:
        assert data.dtype == np.float16 and data.shape == (NUM_RECORDS, 3, 112, 112)
        assert np.isfinite(data).all() and sorted(labels) == list(range(NUM_RECORDS))
    assert not np.array_equal(epochs[0][0], epochs[1][0])


def _augment_flags(*flags):
    parser = argparse.ArgumentParser()
    iterators.add_data_args(parser)
    iterators.add_normalize_args(parser)
    iterators.add_augment_args(parser)
    return iterators.data_iter_kwargs(parser.parse_args(list(flags)))


def test_rrc_scale_and_ratio_flags_reach_the_record_iterator(rec):
    """A crop of (nearly) the whole square photo at aspect (nearly) 1 is the photo resized:
    what the validation iterator gives with resize=64. The default range crops other
    windows."""
    shape = (3, 64, 64)
    whole = _square_rows(iterators.get_val_iter(rec, 10, shape, resize=64))

    def crops(*flags):
        kwargs = _augment_flags('--random-resized-crop', '--pca-noise', '0', *flags)
        return _square_rows(iterators.get_train_iter(rec, 10, shape, mirror=False,
                                                     shuffle=False, **kwargs))
    np.testing.assert_allclose(crops('--rrc-scale', '0.999,1', '--rrc-ratio', '0.999,1.001'),
                               whole, atol=1e-4)
    assert np.abs(crops() - whole).mean() > 10
    assert np.abs(crops('--rrc-scale', '0.3,0.5') - whole).mean() > 10
    with pytest.raises(UsageError, match='add --random-resized-crop'):
        _augment_flags('--rrc-scale', '0.5,1')
    with pytest.raises(UsageError, match='skipped by MXNet'):
        crops('--rrc-scale', '1,1', '--rrc-ratio', '1,1')
    for bad in (['--rrc-scale', '0,1'], ['--rrc-scale', '0.5,1.5'], ['--rrc-ratio', '2,1'],
                ['--rrc-ratio', '1'], ['--random-erasing', '1.5']):
        with pytest.raises(SystemExit):
            _augment_flags(*bad)


def test_random_erasing_replaces_one_rectangle_per_image_with_noise(rec):
    """--random-erasing 1: every photo keeps its pixels but for one rectangle of 2-33% of its
    area, filled with noise of the pixels' spread; the same seed erases the same rectangles,
    the next pass others."""
    flags = ['--pca-noise', '0', '--rgb-std', ','.join(map(str, iterators.STD_RGB))]

    def two_passes(seed, *erasing):
        it = iterators.get_train_iter(rec, 10, FULL, mirror=False, shuffle=False, seed=seed,
                                      **_augment_flags(*flags + list(erasing)))
        return _square_rows(it), _square_rows(it)
    plain = two_passes(7)[0]
    first, second = two_passes(7, '--random-erasing', '1')
    for got, ref in zip(first, plain):
        rows, cols = np.nonzero((got != ref).any(axis=0))
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        area = (bottom - top) * (right - left) / float(256 * 256)
        assert 0.02 <= area <= 1 / 3 + 0.01
        kept = np.ones(ref.shape, bool)
        kept[:, top:bottom, left:right] = False
        np.testing.assert_array_equal(got[kept], ref[kept])
        patch = got[:, top:bottom, left:right]
        assert 0.8 < patch.std() < 1.2 and abs(patch.mean()) < 0.2
    np.testing.assert_array_equal(two_passes(7, '--random-erasing', '1')[0], first)
    assert not np.array_equal(second, first)


def _soft_batches(rec, **kwargs):
    """Pairs (plain batch, soft-label batch) of the validation pipeline (file order, center
    crop: the same pixels every time), labels 0..29 = the record index."""
    shape, classes = (3, 64, 64), NUM_RECORDS
    plain = list(iterators.get_val_iter(rec, 10, shape))
    soft = iterators.soft_label_iter(iterators.get_val_iter(rec, 10, shape), classes, **kwargs)
    assert soft.provide_label[0].shape == (10, classes) and soft.batches_per_epoch == 3
    return [(p.data[0].asnumpy(), p.label[0].asnumpy().astype(int), s.data[0].asnumpy(),
             s.label[0].asnumpy()) for p, s in zip(plain, soft)]


def test_mixup_blends_each_image_with_another_and_their_labels(rec):
    shares = []
    for pixels, labels, mixed, targets in _soft_batches(rec, mixup=0.4, seed=(3, 1)):
        rows = np.arange(10)
        lam = targets[rows, labels]
        assert np.allclose(lam, lam[0]) and 0 < lam[0] < 1
        np.testing.assert_allclose(targets[rows, labels[::-1]], 1 - lam, atol=1e-6)
        assert ((targets > 0).sum(axis=1) == 2).all()
        np.testing.assert_allclose(mixed, lam[0] * pixels + (1 - lam[0]) * pixels[::-1],
                                   atol=1e-3)
        shares.append(lam[0])
    assert len(set(shares)) == 3       # a draw per batch, the same for the same seed
    again = [t[0, labels[0]] for _, labels, _, t in _soft_batches(rec, mixup=0.4, seed=(3, 1))]
    other = [t[0, labels[0]] for _, labels, _, t in _soft_batches(rec, mixup=0.4, seed=(3, 2))]
    assert again == shares and other != shares


def test_cutmix_pastes_a_box_of_another_image_weighted_by_its_area(rec):
    for pixels, labels, mixed, targets in _soft_batches(rec, cutmix=1.0, seed=(0, 1)):
        lam = targets[0, labels[0]]
        pasted = (mixed != pixels).any(axis=1)           # (N, H, W)
        np.testing.assert_array_equal(mixed[pasted[:, None].repeat(3, 1)],
                                      pixels[::-1][pasted[:, None].repeat(3, 1)])
        rows, cols = np.nonzero(pasted.any(axis=0))
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) / 64.0 ** 2
        assert box == pytest.approx(1 - lam, abs=1e-6)
        np.testing.assert_allclose(targets.sum(axis=1), 1, atol=1e-6)


def test_label_smoothing_alone_keeps_the_pixels(rec):
    for pixels, labels, same, targets in _soft_batches(rec, smoothing=0.1):
        np.testing.assert_array_equal(same, pixels)
        expected = np.full((10, NUM_RECORDS), 0.1 / (NUM_RECORDS - 1), np.float32)
        expected[np.arange(10), labels] = 0.9
        np.testing.assert_allclose(targets, expected, rtol=1e-6)


def test_get_rec_iters_without_val(rec):
    train, val = iterators.get_rec_iters(rec, None, 4, CROP, pca_noise=0)
    assert val is None and train.provide_data[0].shape == (4,) + CROP
    train, val = iterators.get_rec_iters(rec, rec, 4, CROP, pca_noise=0, std_rgb=(2, 2, 2))
    assert next(iter(val)).data[0].shape == (4,) + CROP


# ---------------------------------------------------------------- 10-crop

def test_ten_crop_corners_center_and_mirrors(rec, decoded):
    std = iterators.STD_RGB
    it = iterators.TenCropIter(rec, 4, CROP, std_rgb=std)
    assert it.provide_data[0].shape == (40,) + CROP
    batches = list(it)
    assert len(batches) == 8 and [b.pad for b in batches] == [0] * 7 + [2]
    labels = np.concatenate([b.label[0].asnumpy()[:(4 - b.pad) * 10] for b in batches])
    np.testing.assert_array_equal(labels, np.repeat(np.arange(NUM_RECORDS), 10))
    data = np.concatenate([b.data[0].asnumpy()[:(4 - b.pad) * 10] for b in batches])
    assert data.shape == (NUM_RECORDS * 10,) + CROP
    for i in (0, NUM_SQUARE, NUM_RECORDS - 1):   # a square photo, a wide one, the last one
        image = decoded[i]
        crops = data[i * 10:i * 10 + 10]
        h, w = image.shape[:2]
        for k, (top, left) in enumerate([(0, 0), (0, w - 227), (h - 227, 0), (h - 227, w - 227),
                                         ((h - 227) // 2, (w - 227) // 2)]):
            expected = _chw(image[top:top + 227, left:left + 227], std=std)
            np.testing.assert_allclose(crops[k], expected, rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(crops[k + 5], crops[k][:, :, ::-1])
    it.close()


def test_ten_crop_center_matches_val_iterator(rec):
    center = np.concatenate([b.data[0].asnumpy()[4::10] for b in iterators.TenCropIter(rec, 5, CROP)])
    val = _concat(_epoch(iterators.get_val_iter(rec, 5, CROP)))[0]
    np.testing.assert_allclose(center, val, atol=1e-4)


def test_ten_crop_resizes_small_images(rec):
    it = iterators.TenCropIter(rec, 3, (3, 300, 300), resize=None, dtype='float16')
    batch = next(iter(it))
    assert batch.data[0].shape == (30, 3, 300, 300) and batch.data[0].dtype == np.float16
    np.testing.assert_array_equal(batch.data[0][5].asnumpy(), batch.data[0][0].asnumpy()[:, :, ::-1])
    it.close()


# ---------------------------------------------------------------- synthetic data and flags

def test_synthetic_iter_is_fixed_random_data():
    it = iterators.SyntheticIter(4, (3, 32, 32), 10, num_batches=3)
    assert it.provide_data[0].shape == (4, 3, 32, 32) and it.provide_label[0].shape == (4,)
    for _ in range(2):
        batches = list(it)
        assert len(batches) == 3
        it.reset()
    first, last = batches[0], batches[-1]
    np.testing.assert_array_equal(first.data[0].asnumpy(), last.data[0].asnumpy())
    assert first.data[0].context == mx.cpu() and first.data[0].asnumpy().std() > 0.1
    labels = first.label[0].asnumpy()
    assert ((labels >= 0) & (labels < 10)).all() and (labels == labels.astype(int)).all()
    assert iterators.SyntheticIter(2, (3, 8, 8), 5, 1, dtype='float16').provide_data[0].dtype == 'float16'


def test_data_flags_defaults_and_parsing():
    parser = argparse.ArgumentParser()
    iterators.add_data_args(parser)
    iterators.add_normalize_args(parser)
    iterators.add_augment_args(parser)
    kwargs = iterators.data_iter_kwargs(parser.parse_args([]))
    assert kwargs == dict(mean_rgb=iterators.MEAN_RGB, std_rgb=None, pca_noise=0.1,
                          color_jitter=0.0, random_resized_crop=False, random_area=(0.08, 1.0),
                          aspect_ratio=(3 / 4, 4 / 3), random_erasing=0.0, num_threads=None)
    args = parser.parse_args(['--rgb-std', '58.4,57.1,57.4', '--random-resized-crop',
                              '--data-nthreads', '2'])
    kwargs = iterators.data_iter_kwargs(args)
    assert kwargs['std_rgb'] == (58.4, 57.1, 57.4) and kwargs['random_resized_crop']
    with pytest.raises(SystemExit):
        parser.parse_args(['--rgb-mean', '1,2'])
