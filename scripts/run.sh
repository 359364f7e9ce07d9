#!/usr/bin/env bash
# bash scripts/run.sh demo [demo args]   set up, then run the node on the embedded frames
# bash scripts/run.sh test [pytest args] set up, then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
job=${1:-}
shift || true
case "$job" in
  demo) exec .venv/bin/python -m enet_ros.tools.demo "$@" ;;
  # each test's name as it runs, and the slowest ones with their times at the end
  test) bash scripts/setup_docs.sh  # the docs test's rosdoc2 and codespell
        exec .venv/bin/python -m pytest -v --durations=25 "$@" ;;
  *) echo "usage: bash scripts/run.sh demo|test [args]" >&2; exit 2 ;;
esac
