#!/usr/bin/env bash
# Install Detectron2 into the Python given as $1 (default: python).
#
# 1. If a Detectron2 with its compiled ops (detectron2._C) is already importable, it is
#    used untouched (e.g. the official one built from source: see README.md).
# 2. Otherwise install the PyPI sdist pb1-detectron2==0.6, which is Detectron2 v0.6's
#    Python package published without its C++ sources, with its extension build switched
#    off. person_search.compat then supplies what v0.6 lacks on today's stack.
set -euo pipefail
PY=${1:-python}

if "$PY" -c "import detectron2, detectron2._C" 2>/dev/null; then
  echo "install_detectron2: a Detectron2 with compiled ops is importable; using it as is"
  exit 0
fi
if "$PY" -c "import detectron2" 2>/dev/null; then
  echo "install_detectron2: Detectron2 (without compiled ops) is already installed"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# setup.py of the sdist imports torch: torch must already be installed.
"$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
  pb1-detectron2==0.6 -d "$work"
tar xzf "$work"/pb1*detectron2-0.6.tar.gz -C "$work"
src=$(ls -d "$work"/pb1*detectron2-0.6)
# The sdist has no detectron2/layers/csrc: build no extension.
grep -q 'ext_modules=get_extensions(),' "$src/setup.py" || {
  echo "install_detectron2: unexpected setup.py in the sdist; cannot switch its extension off" >&2
  exit 1
}
sed -i 's/ext_modules=get_extensions(),/ext_modules=[],/' "$src/setup.py"
# Its pinned dependencies include black==21.4b2 and caffe2-era packages we never use:
# install the runtime ones explicitly instead.
"$PY" -m pip install --quiet --no-deps --no-build-isolation "$src"
"$PY" -m pip install --quiet "Pillow>=7.1" matplotlib "pycocotools>=2.0.2" "termcolor>=1.1" \
  "yacs>=0.1.8" tabulate cloudpickle "tqdm>4.29.0" tensorboard "fvcore>=0.1.5,<0.1.6" \
  "iopath>=0.1.7,<0.1.10" "omegaconf>=2.1" "hydra-core>=1.1" future pydot
echo "install_detectron2: installed pb1-detectron2 0.6 (Python only)"
