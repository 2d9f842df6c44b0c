"""The command-line programs: each module has ``build_parser()`` and ``main(argv)``; ``alexnet_mxnet.console`` runs them."""
