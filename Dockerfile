# syntax=docker/dockerfile:1
# Production image: the runtime dependencies only (no dev extra), pinned, non-root user.
# One image, three roles (README): the API (this CMD), `python -m app engine` and
# `python -m app worker`; `python -m app migrate` runs once per deployment (deploy/k8s
# runs it as a Job and sets RUN_MIGRATIONS=false on the API).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# Install only the runtime dependencies, pinned by constraints.txt (.ci/run does the same
# in a fresh venv and starts the app from it).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=app:app alembic.ini ./
COPY --chown=app:app app ./app
COPY --chown=app:app db ./db
COPY --chown=app:app graphql_schema ./graphql_schema
COPY --chown=app:app resolvers ./resolvers
COPY --chown=app:app migrations ./migrations
USER app
# FORWARDED_ALLOW_IPS: the proxies whose X-Forwarded-For is believed (comma-separated IPs
# or CIDRs, * for any). Behind a load balancer set it to the balancer's addresses, or
# every client shares the balancer's IP and its per-IP rate limit budget.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    FORWARDED_ALLOW_IPS=127.0.0.1 \
    RUN_MIGRATIONS=true \
    SEED_DEMO_DATA=false
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('PORT', '8000'), timeout=2)" || exit 1
# DATABASE_URL, REDIS_URL, JWT_SECRET, SECRET_KEY, STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET,
# EXCHANGE_MASTER_KEYS and SMTP_URL must be provided; production refuses defaults. Migrations take a PostgreSQL advisory
# lock, so replicas that start together migrate once.
CMD ["sh", "-c", "if [ \"$RUN_MIGRATIONS\" = true ]; then python -m app migrate || exit 1; fi; exec uvicorn app.asgi:create_app_from_env --factory --host \"$HOST\" --port \"$PORT\" --proxy-headers --forwarded-allow-ips \"$FORWARDED_ALLOW_IPS\" --timeout-graceful-shutdown 10 --no-access-log --ws-max-size \"${WS_MAX_MESSAGE_BYTES:-65536}\" --ws-per-message-deflate \"${WS_PER_MESSAGE_DEFLATE:-false}\""]
