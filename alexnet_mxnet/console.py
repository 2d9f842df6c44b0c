"""Entry points of the command-line programs (the console scripts, and the scripts at the top of
the repository). Light to import: each loads its command inside ``run_command``."""
from alexnet_mxnet.base.cli import run_command


def train():
    return run_command('alexnet_mxnet.commands.train')


def score():
    return run_command('alexnet_mxnet.commands.score')


def predict():
    return run_command('alexnet_mxnet.commands.predict')


def export():
    return run_command('alexnet_mxnet.commands.export')


def benchmark():
    return run_command('alexnet_mxnet.commands.benchmark')


def launch():
    return run_command('alexnet_mxnet.commands.launch')


def im2rec():
    return run_command('alexnet_mxnet.commands.im2rec')


def summary():
    return run_command('alexnet_mxnet.commands.summary')
