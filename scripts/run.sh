#!/usr/bin/env bash
# Start the whole service (web, worker, beat, flower, dispatcher) under supervisord, which
# starts again any process that exits; Ctrl-C or SIGTERM stops them all.
# Without REDIS_URL / CELERY_BROKER_URL an embedded Redis is started under var/;
# without DATABASE_URL a SQLite file under var/ is used.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=python
# .env as the settings read it (the environment wins), so this script decides alike.
eval "$($PY -m core.env exports)"
VAR="$($PY -c 'from core.env import var_dir; print(var_dir())')"
export VAR_DIR="$VAR"
mkdir -p "$VAR"
export DEBUG="${DEBUG:-1}"
if [ -z "${SECRET_KEY:-}" ]; then
  [ -f "$VAR/secret_key" ] || $PY -c 'import secrets; print(secrets.token_urlsafe(48))' > "$VAR/secret_key"
  export SECRET_KEY="$(cat "$VAR/secret_key")"
fi
if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
  [ -f "$VAR/flower_auth" ] || echo "admin:$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')" > "$VAR/flower_auth"
  export FLOWER_BASIC_AUTH="$(cat "$VAR/flower_auth")"
fi
if [ -z "${METRICS_TOKEN:-}" ]; then
  [ -f "$VAR/metrics_token" ] || $PY -c 'import secrets; print(secrets.token_urlsafe(24))' > "$VAR/metrics_token"
  export METRICS_TOKEN="$(cat "$VAR/metrics_token")"
fi
if [ -z "${REDIS_URL:-}" ] && [ -z "${CELERY_BROKER_URL:-}" ]; then
  $PY -m config.embedded_redis start
  trap '$PY -m config.embedded_redis stop' EXIT
fi
$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput --verbosity 0
$PY manage.py bootstrap_demo
BASE="http://localhost:${PORT:-8000}"
echo "Dashboard: $BASE/dashboard/  (log in with the admin user)"
echo "API docs:  $BASE/api/docs/"
echo "Flower:    http://localhost:${FLOWER_PORT:-5555}/  (login ${FLOWER_BASIC_AUTH})"
echo "Metrics:   curl -H 'Authorization: Bearer ${METRICS_TOKEN}' $BASE/metrics"
echo "Processes: .venv/bin/supervisorctl -c $VAR/supervisord.conf status"
# supervisord runs the Procfile's processes and restarts what exits. It runs in the
# background so this shell can forward Ctrl-C / SIGTERM to it, wait for every process to
# stop, and only then stop the embedded Redis (the EXIT trap).
supervisord -c "$($PY -m config.supervisor)" &
SUPERVISOR=$!
trap 'kill -TERM "$SUPERVISOR" 2>/dev/null || true' INT TERM
while kill -0 "$SUPERVISOR" 2>/dev/null; do wait "$SUPERVISOR" || true; done
