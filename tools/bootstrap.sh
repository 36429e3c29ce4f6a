#!/bin/sh
# Prepare a fresh Debian machine for apkfarm: system packages and the .venv.
#
# This is the only shell in the tool chain: it runs before any Python
# environment exists. Everything after it is Python (tools/devtool.py).
#
#   tools/bootstrap.sh            packages for building and testing
#   tools/bootstrap.sh --minimal  only what `apkfarm build` needs (demo)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

minimal=false
[ "${1:-}" = "--minimal" ] && minimal=true

# What `apkfarm build` needs: a sandbox, compilers and build systems for the
# example templates, and the cross toolchains for the other architectures.
build_packages="ca-certificates git bubblewrap gcc g++ make cmake meson ninja-build
pkg-config file patch xz-utils zip unzip python3 python3-venv
gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-riscv64-linux-gnu
libc6-dev-riscv64-cross qemu-user-static clang lld"
# What the test suite adds: the real broker, the container engine, the base
# image builder and promtool for metrics checks.
test_packages="docker.io rabbitmq-server debootstrap prometheus curl"

packages=$build_packages
$minimal || packages="$packages $test_packages"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing Debian packages:$missing"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Installing must not start the distribution's own broker or Prometheus:
    # tests run private instances on free ports.
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    $sudo rm -f /usr/sbin/policy-rc.d
fi

# Python >= 3.12 is required (cports templates use PEP 701 f-strings).
find_python() {
    for candidate in python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    python=$(find_python) || {
        echo "bootstrap: error: Python >= 3.12 not found (install python3.12+ or use pyenv)" >&2
        exit 1
    }
    echo "bootstrap: creating .venv with $python"
    "$python" -m venv .venv
fi

# Reinstall only when the project's dependency list changed.
stamp=.venv/.apkfarm-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing apkfarm and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" >"$stamp"
fi
