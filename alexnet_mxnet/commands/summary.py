"""``python -m alexnet_mxnet.tools.summary`` / ``alexnet-summary``: the per-layer table of a network."""
from alexnet_mxnet.base.cli import OneLineErrorParser
from alexnet_mxnet.tools.summary import format_summary, network_summary
from symbols.args import add_network_args


def main(argv=None):
    parser = OneLineErrorParser(
        description='Print the per-layer output shapes, parameter and neuron counts of a network.')
    add_network_args(parser)
    args = parser.parse_args(argv)
    print(format_summary(network_summary(args.network, args.num_classes, args.image_shape,
                                         args.dtype)))
