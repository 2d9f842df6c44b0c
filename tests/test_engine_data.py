"""alexnet_mxnet.train.data: the one reader of class-name files, for training and for inference."""
import pytest

from alexnet_mxnet.base.labels import labels_beside, read_labels_file


def test_converter_labels_file_by_index_with_non_ascii_names(tmp_path):
    (tmp_path / 'p_labels.txt').write_text('1\tbees\tabeille\n0\tants\tfourmi ä\n', encoding='utf-8')
    (tmp_path / 'p_train.rec').write_bytes(b'')
    assert labels_beside(str(tmp_path / 'p_train.rec')) == ['fourmi ä', 'abeille']
    assert labels_beside(str(tmp_path / 'other.rec')) is None


def test_plain_list_and_bad_numbering(tmp_path):
    plain = tmp_path / 'names.txt'
    plain.write_text('cat\n\ndog\n', encoding='utf-8')
    assert read_labels_file(str(plain)) == ['cat', 'dog']
    gap = tmp_path / 'gap.txt'
    gap.write_text('0\ta\ta\n2\tc\tc\n', encoding='utf-8')
    with pytest.raises(ValueError, match='does not number its classes'):
        read_labels_file(str(gap))


def test_a_labels_file_that_is_not_utf8_is_a_usage_error(tmp_path):
    from alexnet_mxnet.base.errors import UsageError
    latin = tmp_path / 'p_labels.txt'
    latin.write_bytes('0\tants\tfourmi é\n'.encode('latin-1'))
    with pytest.raises(UsageError, match='not UTF-8 text'):
        read_labels_file(str(latin))
