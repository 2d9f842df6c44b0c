"""Top-k classes of image files with a checkpoint, many images per forward pass."""
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from tqdm import tqdm

from alexnet_mxnet.base.imagefile import SkipImage
from alexnet_mxnet.base.metrics import top_classes
from alexnet_mxnet.inference.images import DEFAULT_RESIZE, load_center_crop
from alexnet_mxnet.inference.predictor import Predictor


@dataclass
class Prediction:
    path: str
    classes: list        # class indices, most probable first
    names: list
    probabilities: list

    def to_json(self):
        return {'path': self.path, 'top': [
            {'class': int(c), 'name': n, 'probability': float(p)}
            for c, n, p in zip(self.classes, self.names, self.probabilities)]}


def predict_files(model, paths, batch_size=32, contexts=None, *, top_k=5, resize=DEFAULT_RESIZE,
                  progress=True):
    """``(predictions, skipped)``: a ``Prediction`` per readable file, in order, and
    ``(path, reason)`` for each file that is not a usable image (``alexnet_mxnet.base.imagefile``)."""
    predictor = Predictor.for_model(model, batch_size, contexts or [mx.cpu()])
    k = min(top_k, model.num_classes)
    predictions, skipped, pending = [], [], []

    def flush():
        data = np.zeros(predictor.data_shape, np.float32)
        for row, (_, crop) in enumerate(pending):
            data[row] = crop
        probs = predictor.probabilities(data)[:len(pending)]
        for (path, _), row, order in zip(pending, probs, top_classes(probs, k)):
            predictions.append(Prediction(path, order.tolist(),
                                          [model.class_names[i] for i in order],
                                          row[order].tolist()))
        pending.clear()

    for path in tqdm(paths, unit='img', desc='predict', disable=not progress):
        try:
            crop = load_center_crop(path, model.image_shape, model.mean_rgb, model.std_rgb, resize)
        except SkipImage as why:
            skipped.append((path, str(why)))
            continue
        pending.append((path, crop))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return predictions, skipped
