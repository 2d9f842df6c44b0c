"""The scheduler here, servers and workers on the hosts of a hostfile, through ssh."""
import collections
import ipaddress
import os
import shlex
import socket

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.tools.roles import (FORWARDED_PREFIXES, Proc, check_counts, dmlc_env,
                                       free_port, job_roles, role_argv)

Host = collections.namedtuple('Host', 'address port')


def parse_hostfile(path):
    """Hosts from a file: one ``host``, ``user@host`` or ``host:sshport`` per line, ``#`` comments."""
    if not os.path.isfile(path):
        raise UsageError('hostfile not found: %s' % path)
    hosts = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            address, _, port = line.partition(':')
            if len(line.split()) != 1 or not address or (port and not port.isdigit()):
                raise UsageError('%s line %d: expected host, user@host or host:port, got %r'
                                 % (path, number, line))
            hosts.append(Host(address, int(port) if port else None))
    if not hosts:
        raise UsageError('hostfile %s lists no hosts' % path)
    return hosts


def ssh_argv(host, env, command, workdir):
    """``ssh host 'cd DIR && exec env VAR=... CMD'``.

    ``-tt`` gives the remote command a terminal, so it gets SIGHUP and dies when the local ssh
    is killed; ``BatchMode`` makes a missing key fail at once instead of prompting; the
    keep-alives make ssh exit (status 255, which stops the job) about 30 s after a host
    stops answering, a failure no process could otherwise report.
    """
    assignments = ' '.join(shlex.quote('%s=%s' % item) for item in sorted(env.items()))
    remote = 'cd %s && exec env %s %s' % (shlex.quote(workdir), assignments,
                                          ' '.join(shlex.quote(arg) for arg in command))
    argv = ['ssh', '-tt', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=accept-new',
            '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=3']
    if host.port:
        argv += ['-p', str(host.port)]
    return argv + [host.address, remote]


def _ip_literal(address):
    try:
        return str(ipaddress.ip_address(address.rpartition('@')[2]))
    except ValueError:
        return None


def outbound_address(host):
    """This machine's address as seen on the route to ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host.rpartition('@')[2], 9))
            return sock.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def forwarded_environment():
    """This shell's DMLC_/PS_/MXNET_/OMP_/KMP_ variables (not the DMLC_ ones a job sets)."""
    return {key: value for key, value in os.environ.items()
            if key.startswith(FORWARDED_PREFIXES) and not key.startswith('DMLC_')}


def ssh_job(hosts, num_workers, num_servers, command, *, root_uri=None, port=None, env=None,
            server_env=None, worker_env=None, python='python3', workdir=None, interface=None):
    """The scheduler here; servers and workers round-robin over ``hosts`` through ssh.

    Remote processes get the DMLC_* variables, this shell's DMLC_/PS_/MXNET_/OMP_/KMP_ ones
    and ``env``; a host written as an IP address also becomes that process's DMLC_NODE_HOST.
    """
    check_counts(num_workers, num_servers, command)
    root_uri = root_uri or outbound_address(hosts[0].address)
    port = port or free_port('')
    workdir = workdir or os.getcwd()
    forwarded = forwarded_environment()
    counts = {'server': 0, 'worker': 0}
    procs = []
    for role, index in job_roles(num_workers, num_servers):
        common = dict(root_uri=root_uri, port=port, num_workers=num_workers,
                      num_servers=num_servers, interface=interface)
        if role == 'scheduler':
            child = dict(os.environ, PYTHONUNBUFFERED='1', **env or {})
            child.update(dmlc_env(role, node_host=root_uri, **common))
            procs.append(Proc(role, index, role_argv(role, command), child, None))
            continue
        host = hosts[counts[role] % len(hosts)]
        counts[role] += 1
        remote_env = dict(forwarded, PYTHONUNBUFFERED='1')
        remote_env.update(dmlc_env(role, node_host=_ip_literal(host.address), **common))
        remote_env.update(env or {})
        remote_env.update((worker_env if role == 'worker' else server_env) or {})
        procs.append(Proc(role, index, ssh_argv(host, remote_env, role_argv(role, command, python),
                                                workdir), dict(os.environ), None))
    return procs
