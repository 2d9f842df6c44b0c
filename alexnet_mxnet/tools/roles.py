"""The processes of a parameter-server job and the ``DMLC_*`` environment each one reads.

MXNet's kvstore (ps-lite) reads its role and the scheduler's address from ``DMLC_*``
environment variables; a process whose ``DMLC_ROLE`` is ``server`` or ``scheduler`` runs the
server loop inside ``import mxnet`` and exits when the workers are done. Every launcher (local,
ssh, Slurm, MPI) lays a job out the same way: slot 0 is the scheduler, slots 1..S the servers,
slots S+1..S+N the workers; a role's index is its launch slot among its kind (the kvstore rank
is assigned by ps-lite).
"""
import collections
import fcntl
import re
import socket
import struct
import sys

from alexnet_mxnet.base.errors import UsageError

# A server/scheduler process. With DMLC_ROLE=server, MXNet runs the server loop inside
# `import mxnet`; the server then unpickles the workers' optimizer, whose classes (say an
# lr scheduler subclassing mx.lr_scheduler.LRScheduler) cannot load while mxnet is still
# half-imported. So import mxnet as a plain process first, then start the loop.
SERVER_CODE = ('import os; role = os.environ.pop("DMLC_ROLE"); import mxnet; '
               'os.environ["DMLC_ROLE"] = role; '
               'from mxnet.kvstore.kvstore_server import _init_kvstore_server_module; '
               '_init_kvstore_server_module()')
# Variables of this shell that remote processes get (besides DMLC_* and --env ones).
FORWARDED_PREFIXES = ('DMLC_', 'PS_', 'MXNET_', 'OMP_', 'KMP_')
SIOCGIFADDR = 0x8915

# tasks: for a resource manager's launcher (srun, mpirun), the [(role, index)] its tasks run.
Proc = collections.namedtuple('Proc', 'role index argv env cwd tasks', defaults=(None,))


def free_port(host='127.0.0.1'):
    """A TCP port nobody listens on right now (for the scheduler)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_env_pairs(pairs):
    """``['A:1', 'B=2']`` -> ``{'A': '1', 'B': '2'}`` (the stock launcher writes ``VAR:value``)."""
    env = {}
    for pair in pairs or ():
        match = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)[:=](.*)$', pair)
        if not match:
            raise UsageError('--env expects VAR:value or VAR=value, got %r' % pair)
        env[match.group(1)] = match.group(2)
    return env


def dmlc_env(role, *, root_uri, port, num_workers, num_servers, node_host=None, interface=None):
    """The variables ps-lite reads to find the scheduler and its own place in the job."""
    env = {'DMLC_ROLE': role, 'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(port),
           'DMLC_NUM_WORKER': str(num_workers), 'DMLC_NUM_SERVER': str(num_servers)}
    if node_host:
        env['DMLC_NODE_HOST'] = node_host
    if interface:
        env['DMLC_INTERFACE'] = interface
    return env


def check_counts(num_workers, num_servers, command):
    if num_workers < 1:
        raise UsageError('-n/--num-workers must be at least 1, got %d' % num_workers)
    if num_servers < 1:
        raise UsageError('-s/--num-servers must be at least 1, got %d' % num_servers)
    if not command:
        raise UsageError('no command to run: put the worker command after the options, '
                         'e.g. launch.py -n 2 python train_imagenet.py --kv-store dist_sync')


def job_roles(num_workers, num_servers):
    """``[(role, index)]`` by launch slot: the scheduler, the servers, the workers."""
    return ([('scheduler', 0)] + [('server', i) for i in range(num_servers)]
            + [('worker', i) for i in range(num_workers)])


def first_slot(role, num_servers):
    """The launch slot of ``role`` number 0."""
    return {'scheduler': 0, 'server': 1, 'worker': 1 + num_servers}[role]


def role_label(role, index):
    """How output and messages name a process: ``scheduler``, ``server 0``, ``worker 1``."""
    return role if role == 'scheduler' else '%s %d' % (role, index)


def role_argv(role, command, python=sys.executable):
    """What a role runs: the worker command, or the server loop."""
    return list(command) if role == 'worker' else [python, '-c', SERVER_CODE]


def interface_address(name):
    """The IPv4 address of this machine's network interface ``name`` (e.g. ``eth0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                 struct.pack('256s', name.encode()[:15]))
        except OSError as err:
            raise UsageError('network interface %r has no IPv4 address here (%s); see ip addr '
                             'for the names' % (name, err.strerror)) from None
    return socket.inet_ntoa(packed[20:24])


def is_this_machine(host):
    """Whether ``host`` (a name or address) names the machine this runs on."""
    names = {socket.gethostname(), socket.gethostname().split('.')[0], 'localhost'}
    if host in names:
        return True
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    return address.startswith('127.') or address in _own_addresses()


def _own_addresses():
    try:
        return set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        return set()


def host_address(host, interface=None):
    """The IPv4 address at which the other machines reach ``host``'s scheduler: its address on
    ``interface`` when it is this machine, else what its name resolves to."""
    if interface and is_this_machine(host):
        return interface_address(interface)
    try:
        return socket.gethostbyname(host)
    except OSError as err:
        raise UsageError('cannot resolve the scheduler host %r (%s); pass --root-uri ADDRESS'
                         % (host, err.strerror or err)) from None
