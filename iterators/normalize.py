"""The per-channel statistics every pipeline subtracts and divides by."""
from alexnet_mxnet.base.argtypes import parse_rgb

# ImageNet RGB mean and standard deviation on the 0..255 scale (as MXNet's and GluonCV's examples).
MEAN_RGB = (123.68, 116.779, 103.939)
STD_RGB = (58.393, 57.12, 57.375)


def check_mean_std(mean_rgb, std_rgb):
    """``(mean, std)`` as tuples of three numbers (std may be ``None``; its values positive)."""
    return (parse_rgb(mean_rgb, 'mean'),
            None if std_rgb is None else parse_rgb(std_rgb, 'std', positive=True))
