# syntax=docker/dockerfile:1
# mailgw container image: the one executable (SPEC §7) on a slim glibc base, as a non-root user.
#
#   docker build --build-arg MAILGW_BUILD_COMMIT=$(git rev-parse --short HEAD) -t mailgw .
#   docker run -d --init --stop-timeout 90 -p 25:2525 -p 127.0.0.1:3000:3000 -v mailgw-data:/app/data \
#     -v "$PWD/config:/app/config:ro" -e RULES_FILE=/app/config/rules.yaml mailgw   (your rules; README, Docker)
#   (--init: a SIGTERM right at start is not lost to PID 1's ignore-by-default; --stop-timeout 90: README, Docker)
#
# Build stage: installs exactly what package-lock.json pins (npm ci, which also brings the bun
# compiler as a devDependency) and compiles dist/mailgw. Runtime stage: distroless "cc" image
# (glibc, CA certificates, no shell, no package manager) carrying only the executable, the
# default rules.yaml and an empty data directory owned by the runtime user.

FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
ARG MAILGW_BUILD_COMMIT=unknown
ENV MAILGW_BUILD_COMMIT=${MAILGW_BUILD_COMMIT}
RUN npm run build \
 && ./dist/mailgw --version \
 && mkdir -p /out/data \
 && cp dist/mailgw /out/mailgw \
 && cp rules.yaml /out/rules.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="mailgw" \
      org.opencontainers.image.description="Inbound mail gateway: SMTP in, rules, archive / forward via relay / webhook, stats page"
WORKDIR /app
# uid/gid 65532 is the image's "nonroot" user.
COPY --from=build --chown=65532:65532 /out/data /app/data
COPY --from=build --chown=0:0 --chmod=0755 /out/mailgw /app/mailgw
COPY --from=build --chown=0:0 --chmod=0644 /out/rules.yaml /app/rules.yaml
USER 65532:65532

# SPEC §2 defaults; HTTP_HOST listens on all interfaces inside the container (publish the port
# on 127.0.0.1 of the host, or set STATS_TOKEN). Secrets (RELAY_SMTP_PASS, STATS_TOKEN,
# WEBHOOK_SECRET) are never baked in: pass them with --env-file or compose `env_file`.
ENV SMTP_HOST=0.0.0.0 \
    SMTP_PORT=2525 \
    SMTP_ALLOWED_IPS=0.0.0.0/0,::/0 \
    SMTP_PROXY_PROTOCOL=false \
    SMTP_PROXY_TRUSTED=127.0.0.0/8,::1/128 \
    SMTP_TLS_REQUIRED=false \
    RELAY_SMTP_PORT=587 \
    RELAY_SMTP_SECURE=starttls \
    RELAY_SMTP_TLS_VERIFY=true \
    RATE_LIMIT_MAX=200 \
    RATE_LIMIT_WINDOW_MS=60000 \
    MAX_MESSAGE_SIZE_MB=25 \
    DATA_DIR=/app/data \
    ARCHIVE_MAX_AGE_DAYS=0 \
    RULES_FILE=/app/rules.yaml \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=3000 \
    LOG_LEVEL=info \
    QUEUE_MAX_AGE_HOURS=96 \
    QUEUE_RETRY_BASE_SECONDS=60

VOLUME /app/data
EXPOSE 2525 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["/app/mailgw","healthcheck"]
# SIGTERM: stop accepting, finish sessions in flight, exit 0 (give it time: --stop-timeout 90, as README).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/mailgw"]
CMD ["serve"]
