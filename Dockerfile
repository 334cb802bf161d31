# One image per service: builds any example of this repository and runs it
# as the container's entry point (the Telestion spec asks for each service
# to deploy as a container as well as an executable).
#
#   docker build -t telestion-standard-ops .
#   docker build -t telestion-publisher --build-arg EXAMPLE=publisher .
#   docker run --rm -e NATS_URL=nats://nats:4222 -e SERVICE_NAME=standard_ops \
#       -e DATA_DIR=/data -v telestion-data:/data telestion-standard-ops
#
# Configuration comes from the environment (or CLI arguments appended to
# `docker run IMAGE ...`, which the empty CMD leaves to you).

FROM rust:1.95-bookworm AS builder
ARG EXAMPLE=standard_ops
WORKDIR /src
COPY . .
RUN cargo build --release --locked --example "$EXAMPLE" \
    && cp "target/release/examples/$EXAMPLE" /usr/local/bin/telestion-service

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
