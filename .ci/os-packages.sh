#!/usr/bin/env bash
# The OS packages of the cluster tests: a real one-node Slurm (slurm-wlm, munge) and Open MPI
# (openmpi-bin); and g++, which builds the fused LRN kernel (symbols/lrn_kernel.py). Best effort, and quick when they are there already: without root, apt-get or
# a network the install is skipped with one line, and the tests that need them skip, saying why.
set -u
packages=(slurm-wlm munge openmpi-bin g++)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "os-packages: ${packages[*]} already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "os-packages: no apt-get here; not installing ${missing[*]} (Slurm/MPI tests will skip)"
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "os-packages: not root; not installing ${missing[*]} (Slurm/MPI tests will skip)"
        exit 0
    fi
fi
echo "os-packages: installing ${missing[*]}"
if ! timeout 120 "${sudo[@]}" apt-get update -qq \
        || ! DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo[@]}" apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "os-packages: could not install ${missing[*]} (no network?); Slurm/MPI tests will skip"
fi
exit 0
