"""The per-channel statistics every pipeline subtracts and divides by."""
from engine.errors import UsageError

# ImageNet RGB mean and standard deviation on the 0..255 scale (as MXNet's and GluonCV's examples).
MEAN_RGB = (123.68, 116.779, 103.939)
STD_RGB = (58.393, 57.12, 57.375)


def check_mean_std(mean_rgb, std_rgb):
    """Validate ``(mean_rgb, std_rgb)``: three numbers each (std may be ``None``); returns tuples."""
    mean = _three(mean_rgb, 'mean')
    if std_rgb is None:
        return mean, None
    std = _three(std_rgb, 'std')
    if min(std) <= 0:
        raise UsageError('RGB std values must be positive, got %s' % (std,))
    return mean, std


def _three(values, what):
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3:
        raise UsageError('RGB %s must be three numbers R,G,B' % what)
    return values
