"""Random erasing (Zhong et al., 2017) as timm's ``RandomErasing(mode='pixel')``: each image
of a normalised batch, with probability ``p``, gets one rectangle replaced by per-pixel
Gaussian noise, so the network cannot rely on any one part of an object."""
import math

# timm's and torchvision's ranges: 2-33% of the image, aspect (h/w) 0.3-3.3, 10 tries.
AREA = (0.02, 1.0 / 3.0)
LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ATTEMPTS = 10


def erase(data, rng, probability, noise_std):
    """Erase in place in ``data`` (N, C, H, W) and return it. ``noise_std`` (C,) is the spread
    of real pixels in the batch's scale, so that the noise looks like pixels, not like a flat
    patch."""
    _, channels, height, width = data.shape
    for image in data:
        if rng.random() >= probability:
            continue
        for _ in range(ATTEMPTS):
            area = height * width * rng.uniform(*AREA)
            aspect = math.exp(rng.uniform(*LOG_ASPECT))
            rows = int(round(math.sqrt(area * aspect)))
            cols = int(round(math.sqrt(area / aspect)))
            if 0 < rows < height and 0 < cols < width:
                top = rng.integers(0, height - rows + 1)
                left = rng.integers(0, width - cols + 1)
                noise = rng.standard_normal((channels, rows, cols)) * noise_std[:, None, None]
                image[:, top:top + rows, left:left + cols] = noise
                break
    return data
