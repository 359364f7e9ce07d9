#!/usr/bin/env bash
# Make .venv-docs: rosdoc2, Sphinx, MyST and codespell (requirements/docs.txt), for the docs
# test. rosdoc2's autodoc imports enet_ros, so the venv also sees .venv's packages (torch,
# rclpy, OpenCV), after its own. Idempotent: nothing to do when docs.txt has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-docs
stamp=$VENV/.enet_ros_setup
want=$(sha256sum requirements/docs.txt | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: $VENV, rosdoc2 and codespell (requirements/docs.txt)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/docs.txt \
  2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
main=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
docs=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$main" > "$docs/enet_ros_main_venv.pth"
echo "$want" > "$stamp"
