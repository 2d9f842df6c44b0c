"""ONNX export round-trips through onnxruntime to the same top-1 as MXNet on real photos."""
import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.commands import export
import iterators
from alexnet_mxnet.inference import model, onnx_export
from alexnet_mxnet.inference.predictor import Predictor

onnx = pytest.importorskip('onnx', reason='ONNX export needs pip install -e ".[export]"')
pytest.importorskip('onnxruntime', reason='ONNX check needs pip install -e ".[export]"')
pytestmark = pytest.mark.slow


def test_onnx_same_top1_as_mxnet(ckpt, tmp_path):
    loaded = model.load_model(ckpt.prefix, '%s-%04d.params' % (ckpt.prefix, ckpt.epoch))
    path = onnx_export.export_onnx(loaded, str(tmp_path / 'alexnet.onnx'))
    proto = onnx.load(path)
    assert [i.name for i in proto.graph.input] == ['data']
    assert [o.name for o in proto.graph.output] == ['softmax']
    assert {op.op_type for op in proto.graph.node} >= {'Conv', 'LRN', 'MaxPool', 'Gemm', 'Softmax'}
    batch = next(iter(iterators.get_val_iter(ckpt.val_rec, 30, loaded.image_shape)))
    data = batch.data[0].asnumpy()
    mxnet_probs = Predictor.for_model(loaded, 30, [mx.cpu()]).probabilities(data)
    onnx_probs = onnx_export.onnx_probabilities(path, data)
    assert onnx_probs.shape == (30, 10)
    np.testing.assert_array_equal(onnx_probs.argmax(1), mxnet_probs.argmax(1))
    assert np.abs(onnx_probs - mxnet_probs).max() < 1e-4
    # a batch size other than the one exported with: the batch dimension is dynamic
    np.testing.assert_allclose(onnx_export.onnx_probabilities(path, data[:3]), onnx_probs[:3],
                               atol=1e-5)


def test_export_cli_prints_the_comparison(ckpt, tmp_path, capsys):
    path, (images, diff, agree) = export.main(['--model-prefix', ckpt.prefix, '--data-val',
                                               ckpt.val_rec, '--output', str(tmp_path / 'm.onnx'),
                                               '--num-verify', '12'])
    out = capsys.readouterr().out
    assert images == 12 and agree == 1.0 and diff < 1e-4
    assert 'same top-1 for 12/12, max abs probability difference' in out
