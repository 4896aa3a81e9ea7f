#!/usr/bin/env bash
# Start the whole service (web, worker, beat, flower, dispatcher) with honcho.
# Without REDIS_URL / CELERY_BROKER_URL an embedded Redis is started under var/;
# without DATABASE_URL a SQLite file under var/ is used.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=python
mkdir -p var
export DEBUG="${DEBUG:-1}"
if [ -z "${SECRET_KEY:-}" ]; then
  [ -f var/secret_key ] || $PY -c 'import secrets; print(secrets.token_urlsafe(48))' > var/secret_key
  export SECRET_KEY="$(cat var/secret_key)"
fi
if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
  [ -f var/flower_auth ] || echo "admin:$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')" > var/flower_auth
  export FLOWER_BASIC_AUTH="$(cat var/flower_auth)"
fi
if [ -z "${REDIS_URL:-}" ] && [ -z "${CELERY_BROKER_URL:-}" ]; then
  $PY -m config.embedded_redis start
  trap '$PY -m config.embedded_redis stop' EXIT
fi
$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput --verbosity 0
$PY manage.py bootstrap_demo
echo "API docs:  http://localhost:${PORT:-8000}/api/docs/"
echo "Flower:    http://localhost:${FLOWER_PORT:-5555}/  (login ${FLOWER_BASIC_AUTH})"
# honcho hands each process PORT (web gets the base port); keep the web on PORT or 8000.
honcho start --port "${PORT:-8000}"
