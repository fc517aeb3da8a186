# The Zumik broker image (used by docker-compose.yml). Builds RocksDB and librdkafka from source:
# expect ~15 minutes on 2 cores the first time.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin zumik && cp target/release/zumik /usr/local/bin/zumik

FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/zumik zumik \
    && mkdir -p /var/lib/zumik && chown zumik /var/lib/zumik
COPY --from=build /usr/local/bin/zumik /usr/local/bin/zumik
COPY zumik.toml /etc/zumik/zumik.toml
USER zumik
WORKDIR /var/lib/zumik
EXPOSE 8080
ENTRYPOINT ["zumik"]
CMD ["serve", "--config", "/etc/zumik/zumik.toml"]
