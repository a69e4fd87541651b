# connector-probe in a container: `docker build -t connector-probe .`
# Run:  docker run -d --name connector-probe -p 127.0.0.1:9425:9425 \
#         -v /srv/connector-probe/connector-probe.toml:/etc/connector-probe/connector-probe.toml:ro \
#         -v connector-probe-state:/var/lib/connector-probe connector-probe
# Reload the configuration: docker kill --signal HUP connector-probe

FROM rust:1-bookworm AS build
# The second TLS engine links the system's OpenSSL 3 (the rust image has most of this; say it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not refetch them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src
COPY src ./src
RUN cargo build --release --locked --bin connector-probe \
    && strip target/release/connector-probe

FROM debian:bookworm-slim
# The native root store (rustls-native-certs reads /etc/ssl/certs), and libssl3 for the
# second TLS engine.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/connector-probe --shell /usr/sbin/nologin connector-probe \
    && install -d -o connector-probe -g connector-probe -m 0700 /var/lib/connector-probe
COPY --from=build /src/target/release/connector-probe /usr/local/bin/connector-probe
# The commented example, listening on all interfaces so the published port reaches it.
# Mount your own file over it.
COPY config/connector-probe.toml /etc/connector-probe/connector-probe.toml
RUN sed -i 's|^metrics_listen = .*|metrics_listen = "0.0.0.0:9425"|' /etc/connector-probe/connector-probe.toml \
    && connector-probe check-config --config /etc/connector-probe/connector-probe.toml >/dev/null

ENV CONNECTOR_PROBE_CONFIG=/etc/connector-probe/connector-probe.toml
USER connector-probe
VOLUME ["/var/lib/connector-probe"]
EXPOSE 9425
# No curl in the image: the binary asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["connector-probe", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["connector-probe"]
CMD ["run"]
