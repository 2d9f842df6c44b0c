"""Install with ``pip install -e .`` (``pip install -e ".[test]"`` for the tests).

GPU users: set ``MXNET_PACKAGE`` to the CUDA build of the same release before
installing, e.g. ``MXNET_PACKAGE=mxnet-cu112==1.9.1 pip install -e .``, so the
CPU ``mxnet`` wheel is not installed beside it.
"""
import os
import re
import sys

from setuptools import find_packages, setup

if not (3, 8) <= sys.version_info[:2] <= (3, 11):
    sys.exit('alexnet-mxnet needs Python 3.8-3.11: mxnet 1.9.1 only works with numpy<1.24 '
             '(it uses np.bool, removed in numpy 1.24), and no numpy<1.24 wheel exists for '
             'Python %d.%d.' % sys.version_info[:2])

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = re.search(r"__version__ = '([^']+)'",
                    open(os.path.join(HERE, 'alexnet_mxnet', '__init__.py')).read()).group(1)
MXNET = os.environ.get('MXNET_PACKAGE', 'mxnet==1.9.1')
EXPORT = ['onnx>=1.13,<1.24', 'onnxruntime>=1.16,<1.33']

setup(
    name='alexnet-mxnet',
    version=VERSION,
    description='AlexNet image classification on MXNet symbolic graphs: data, training, scoring',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.8,<3.12',
    # Three installed names: the graphs, the input pipelines and one package for the rest. The
    # scripts at the repository top (train_imagenet.py, score.py, ...) are not installed; the
    # console scripts below do the same from anywhere.
    packages=find_packages(include=['symbols', 'iterators', 'alexnet_mxnet', 'alexnet_mxnet.*']),
    # the fused LRN kernel's source, compiled on first use (symbols/lrn_kernel.py)
    package_data={'symbols': ['lrn_kernel.cc']},
    install_requires=[
        MXNET,
        'numpy<1.24',            # mxnet 1.9.1 fails on numpy>=1.24 (np.bool) and 2.x (np.PZERO)
        'opencv-python<4.11',
        'gluoncv==0.10.5.post0',
        # gluoncv leaves these open; their newest releases need numpy 2.
        'scipy<1.12',
        'matplotlib<3.9',
        'pandas<2.3',
        'scikit-learn<1.6',      # ships the digits used by the built-in demo data set
        'Pillow',
        'tqdm',
    ],
    entry_points={'console_scripts': [
        'alexnet-%s=alexnet_mxnet.console:%s' % (name, function) for name, function in (
            ('train', 'train'), ('score', 'score'), ('predict', 'predict'), ('export', 'export'),
            ('benchmark', 'benchmark'), ('launch', 'launch'), ('im2rec', 'im2rec'),
            ('summary', 'summary'))]},
    extras_require={
        # ONNX export (export.py); versions that run with numpy<1.24. mx.onnx's use of the
        # onnx.mapping module that onnx 1.16 dropped is bridged in inference/onnx_export.py.
        'export': EXPORT,
        'test': ['pytest>=7.3', 'pytest-timeout', 'wheel'] + EXPORT,
    },
    classifiers=[
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
    ],
)
