"""The package's shape: layers that import only downwards, no package cycles, no imports hidden
in functions (but of optional heavy dependencies), and the three installed names."""
import ast
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

# Lowest first. A module may import project modules of its own layer's package and of lower
# layers only; packages side by side in one layer do not import each other.
LAYERS = [
    ['alexnet_mxnet.base'],
    ['symbols', 'iterators', 'alexnet_mxnet.data'],
    ['alexnet_mxnet.train', 'alexnet_mxnet.inference'],
    ['alexnet_mxnet.tools'],
    ['alexnet_mxnet.commands', 'alexnet_mxnet.console'],
]
ROOT_PACKAGE = 'alexnet_mxnet'          # its __init__ holds only the version: any layer may use it
PROJECT = ('alexnet_mxnet', 'symbols', 'iterators')
# Imported inside functions on purpose: optional (torch, onnx, matplotlib for plots), or needed
# only by the demo data set's first build (scikit-learn's digits).
LAZY_ALLOWED = ('torch', 'onnx', 'onnxruntime', 'matplotlib', 'sklearn', 'gluoncv')


def _modules():
    for package in ('alexnet_mxnet', 'symbols', 'iterators'):
        for path in glob.glob(os.path.join(REPO, package, '**', '*.py'), recursive=True):
            rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
            yield (rel[:-len('.__init__')] if rel.endswith('.__init__') else rel), path


def _group(module):
    """The layer package ``module`` belongs to, and its layer number."""
    for number, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + '.'):
                return package, number
    return None, None


def _imports(path):
    """``[(imported module, at top level?)]`` of one file."""
    tree = ast.parse(open(path, encoding='utf-8').read())
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.extend(('%s.%s' % (child.module, alias.name), top) for alias in child.names)
            visit(child, inner)
    visit(tree, True)
    return found


def _project_target(name):
    """The project module ``name`` (maybe ``module.attribute``) refers to, or None."""
    if name.split('.')[0] not in PROJECT:
        return None
    parts = name.split('.')
    while parts and not (os.path.isfile(os.path.join(REPO, *parts) + '.py')
                         or os.path.isfile(os.path.join(REPO, *parts, '__init__.py'))):
        parts.pop()
    return '.'.join(parts)


def test_every_module_has_a_layer():
    assert [m for m, _ in _modules() if _group(m)[0] is None and m != ROOT_PACKAGE] == []


def test_layers_import_only_downwards_and_nothing_in_functions():
    wrong = []
    for module, path in _modules():
        package, layer = _group(module)
        for name, top in _imports(path):
            target = _project_target(name)
            if target is None:
                if not top and name.split('.')[0] not in LAZY_ALLOWED:
                    wrong.append('%s imports %s inside a function' % (module, name))
                continue
            if not top:
                wrong.append('%s imports %s inside a function' % (module, target))
            if target == ROOT_PACKAGE or module == ROOT_PACKAGE:
                continue
            other, other_layer = _group(target)
            if other_layer > layer or (other_layer == layer and other != package):
                wrong.append('%s (layer %d) imports %s (layer %d)'
                             % (module, layer, target, other_layer))
    assert wrong == []


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path):
    """The check itself can fail: a base module that imports the trainer."""
    path = tmp_path / 'bad.py'
    path.write_text('from alexnet_mxnet.train.fit import fit\n\ndef f():\n    import symbols\n')
    assert [(_project_target(n), top) for n, top in _imports(str(path))] == [
        ('alexnet_mxnet.train.fit', True), ('symbols', False)]
    assert _group('alexnet_mxnet.train.fit')[1] > _group('alexnet_mxnet.base.bad')[1]


def test_converter_workers_import_no_mxnet():
    """The encoding workers start in a fraction of a second because nothing they import
    loads MXNet (alexnet_mxnet.data.encoding and what it imports)."""
    code = ('import sys; import alexnet_mxnet.data.encoding; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "mxnet"))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == '[]'


@pytest.mark.slow
def test_the_wheel_installs_three_names_and_no_scripts(tmp_path):
    """A non-editable install: ``symbols``, ``iterators``, ``alexnet_mxnet`` -- not the scripts
    at the repository top, nor any stray module."""
    source = tmp_path / 'source'        # a copy: building writes build/ and *.egg-info
    shutil.copytree(REPO, str(source), ignore=shutil.ignore_patterns(
        '.git', '__pycache__', '*.egg-info', 'build', 'runs', 'checkpoints'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path), str(source)], check=True, capture_output=True,
                   timeout=300)
    wheel, = glob.glob(str(tmp_path / '*.whl'))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level, = [n for n in names if n.endswith('top_level.txt')]
        assert archive.read(top_level).decode().split() == ['alexnet_mxnet', 'iterators',
                                                             'symbols']
        entry_points, = [n for n in names if n.endswith('entry_points.txt')]
        scripts = archive.read(entry_points).decode()
    assert {n.split('/')[0] for n in names if '.dist-info' not in n} == {
        'alexnet_mxnet', 'iterators', 'symbols'}
    assert 'symbols/lrn_kernel.cc' in names        # the fused LRN kernel is built from it
    for command in ('train', 'score', 'predict', 'export', 'benchmark', 'launch', 'im2rec',
                    'summary'):
        assert 'alexnet-%s = alexnet_mxnet.console:%s' % (command, command) in scripts
