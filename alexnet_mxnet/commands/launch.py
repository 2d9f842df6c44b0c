"""Launch a distributed MXNet job: a scheduler, servers and workers, with the stock flags.

One machine, 2 workers and 1 server over loopback:
    python launch.py -n 2 -s 1 python train_imagenet.py --kv-store dist_sync ...
Several machines (the hostfile lists one host per line; the scheduler runs here):
    python launch.py -n 4 -s 2 --launcher ssh -H hosts python train_imagenet.py --kv-store dist_sync ...
"""
import argparse
import sys

from alexnet_mxnet.base.argtypes import NON_NEGATIVE, POSITIVE_INT, bounded
from alexnet_mxnet.base.cli import OneLineErrorParser
from alexnet_mxnet.tools.launcher import local_job, parse_env_pairs, parse_hostfile, run_job, ssh_job
from alexnet_mxnet.base.errors import UsageError


def build_parser():
    parser = OneLineErrorParser(
        description='Start a parameter-server job (scheduler, servers, workers) for a command '
                    'that uses an MXNet dist_* kvstore. Output is forwarded with a [role index] '
                    'prefix (the index is the launch slot; the kvstore rank is assigned by '
                    'ps-lite). The job stops as soon as any process fails and the exit status '
                    'is that of the first failure.',
        epilog='Example: python launch.py -n 2 -s 1 python train_imagenet.py --kv-store dist_sync',
        usage='%(prog)s -n WORKERS [-s SERVERS] [--launcher local|ssh] [-H HOSTFILE] '
              '[options] COMMAND...')
    parser.add_argument('-n', '--num-workers', type=POSITIVE_INT, required=True,
                        help='number of worker processes, each running COMMAND')
    parser.add_argument('-s', '--num-servers', type=POSITIVE_INT, default=None,
                        help='number of server processes (default: as many as workers)')
    parser.add_argument('--launcher', choices=('local', 'ssh'), default=None,
                        help='local: every process on this machine over loopback; ssh: servers '
                             'and workers round-robin over the hosts of -H (default: ssh when '
                             '-H is given, else local)')
    parser.add_argument('-H', '--hostfile',
                        help='ssh launcher: file with one host (host, user@host or host:sshport) '
                             'per line')
    parser.add_argument('--port', type=bounded(int, 1, 65535), default=None,
                        help='scheduler port (default: a free one)')
    parser.add_argument('--timeout', type=NON_NEGATIVE, default=None, metavar='SECONDS',
                        help='stop the whole job after this many seconds, exit status 124 '
                             '(default: no limit)')
    parser.add_argument('--grace', type=NON_NEGATIVE, default=5.0, metavar='SECONDS',
                        help='after a process fails, how long the others get to exit after '
                             'SIGTERM before SIGKILL; a failure ends the job within about this '
                             'long (default: %(default)s)')
    parser.add_argument('--env', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in every process (repeatable)')
    parser.add_argument('--env-server', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in the scheduler and servers')
    parser.add_argument('--env-worker', action='append', default=[], metavar='VAR:value',
                        help='set an environment variable in the workers')
    parser.add_argument('--python', default=sys.executable,
                        help='interpreter with mxnet that runs the scheduler and servers '
                             '(default: this one, %(default)s; the same path on every host)')
    ssh = parser.add_argument_group('ssh launcher')
    ssh.add_argument('--root-uri', default=None,
                     help='address of this machine that the hosts reach the scheduler at '
                          '(default: the local address on the route to the first host)')
    ssh.add_argument('--workdir', default=None,
                     help='directory on the hosts to run in (default: the current directory)')
    ssh.add_argument('--interface', default=None,
                     help='network interface ps-lite binds on the hosts (DMLC_INTERFACE, e.g. eth0)')
    parser.add_argument('command', nargs=argparse.REMAINDER, metavar='COMMAND',
                        help='the worker command, e.g. python train_imagenet.py --kv-store dist_sync')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    num_servers = args.num_workers if args.num_servers is None else args.num_servers
    launcher = args.launcher or ('ssh' if args.hostfile else 'local')
    common = dict(port=args.port, env=parse_env_pairs(args.env),
                  server_env=parse_env_pairs(args.env_server),
                  worker_env=parse_env_pairs(args.env_worker), python=args.python)
    if launcher == 'ssh':
        if not args.hostfile:
            raise UsageError('--launcher ssh needs -H HOSTFILE')
        procs = ssh_job(parse_hostfile(args.hostfile), args.num_workers, num_servers, command,
                        root_uri=args.root_uri, workdir=args.workdir, interface=args.interface,
                        **common)
    else:
        procs = local_job(args.num_workers, num_servers, command, **common)
    return run_job(procs, timeout=args.timeout, grace=args.grace)

