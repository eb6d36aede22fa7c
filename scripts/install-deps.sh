#!/usr/bin/env bash
# Installs the Debian packages linnet builds and runs with (and the bundled corpus's package).
# CUDA is not installed here: where nvcc is present the CUDA parts are built too.
set -euo pipefail
packages=(cmake pkg-config build-essential libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libzstd-dev
          libyaml-dev libcjson-dev libopenblas-dev libcmocka-dev bible-kjv gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
