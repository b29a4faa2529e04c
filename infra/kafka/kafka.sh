#!/usr/bin/env bash
# Fetch the broker jars, format KRaft storage and start, stop or probe the local broker.
# Usage: infra/kafka/kafka.sh {fetch|start|stop|status}. `fraud up` does the same for the
# whole stack. Runs with the project's virtual environment when there is one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${root}/.venv/bin/python"
[ -x "$python" ] || python="python3"
cd "$root"
exec "$python" -m services.stack.kafka_broker "$@"
