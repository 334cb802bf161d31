# One image per service: builds an app of `apps/` (`--build-arg APP=...`,
# default standard_ops) or a sample of `examples/` (`--build-arg
# EXAMPLE=...`) and runs it as the container's entry point (the Telestion
# spec asks for each service to deploy as a container as well as an
# executable).
#
#   docker build -t telestion-standard-ops .
#   docker build -t telestion-health --build-arg APP=health .
#   docker build -t telestion-publisher --build-arg EXAMPLE=publisher .
#   docker run --rm -e NATS_URL=nats://nats:4222 -e SERVICE_NAME=standard_ops \
#       -e DATA_DIR=/data -v telestion-data:/data telestion-standard-ops
#
# Configuration comes from the environment (or CLI arguments appended to
# `docker run IMAGE ...`, which the empty CMD leaves to you).

FROM rust:1.95-bookworm AS builder
ARG APP=standard_ops
ARG EXAMPLE=
WORKDIR /src
COPY . .
RUN if [ -n "$EXAMPLE" ]; then \
        cargo build --release --locked -p telestion-examples --example "$EXAMPLE" \
        && cp "target/release/examples/$EXAMPLE" /usr/local/bin/telestion-service; \
    else \
        cargo build --release --locked -p "$APP" --bin "$APP" \
        && cp "target/release/$APP" /usr/local/bin/telestion-service; \
    fi

FROM debian:bookworm-slim
# CA certificates for NATS over TLS (the client trusts the system roots).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --shell /usr/sbin/nologin telestion \
    && mkdir /data \
    && chown telestion:telestion /data
COPY --from=builder /usr/local/bin/telestion-service /usr/local/bin/telestion-service
USER telestion
ENV DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/telestion-service"]
CMD []
