# One image per service: an app of `apps/` (`--build-arg APP=...`, default
# standard_ops) or a sample of `examples/` (`--build-arg EXAMPLE=...`),
# run as the container's entry point (the Telestion spec asks for each
# service to deploy as a container as well as an executable).
#
# Default target (`runtime`): builds the binary in the official Rust image
# and copies it into the runtime stage (needs a registry for rust:1.95 and
# debian:bookworm-slim):
#
#   docker build -t telestion-standard-ops .
#   docker build -t telestion-health --build-arg APP=health .
#   docker build -t telestion-publisher --build-arg EXAMPLE=publisher .
#   docker run --rm -e NATS_URL=nats://nats:4222 -e SERVICE_NAME=standard_ops \
#       -e DATA_DIR=/data -v telestion-data:/data telestion-standard-ops
#
# Target `prebuilt`: the same runtime stage around a binary built outside
# the image (on a Debian bookworm host, or any glibc >= 2.36), taken from the
# build context as `BINARY` (a file name in the context):
#
#   cargo build --release --locked -p standard_ops
#   mkdir -p ctx && cp target/release/standard_ops ctx/
#   docker build -f Dockerfile --target prebuilt --build-arg BINARY=standard_ops \
#       -t telestion-standard-ops ctx
#
# `BASE` names the runtime stage's base image (default debian:bookworm-slim;
# the tests use a `debootstrap --variant=minbase bookworm` import).
#
# Configuration comes from the environment (or CLI arguments appended to
# `docker run IMAGE ...`, which the empty CMD leaves to you).

ARG BASE=debian:bookworm-slim

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

# What every deployment runs on: CA certificates, the non-root user, /data.
FROM ${BASE} AS runtime-base
# CA certificates for NATS over TLS (the client trusts the system roots).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 telestion \
    && useradd --system --uid 10001 --gid telestion --home-dir /nonexistent \
        --shell /usr/sbin/nologin telestion \
    && mkdir /data \
    && chown telestion:telestion /data \
    && chmod 0700 /data
ENV DATA_DIR=/data

# A binary built outside the image (see above).
FROM runtime-base AS prebuilt
ARG BINARY=telestion-service
COPY --chmod=0755 ${BINARY} /usr/local/bin/telestion-service
USER telestion
ENTRYPOINT ["/usr/local/bin/telestion-service"]
CMD []

# The default: the binary built in the builder stage.
FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/telestion-service /usr/local/bin/telestion-service
USER telestion
ENTRYPOINT ["/usr/local/bin/telestion-service"]
CMD []
