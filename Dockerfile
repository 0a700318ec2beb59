# Multi-stage build: compile with the Rust toolchain, run on a distroless base
# with no shell and no package manager, as a non-root user.
#   docker build -t tines-audit .
#   docker run --rm -v tines-audit-data:/var/lib/tines-audit \
#     -v $PWD/tines-audit.toml:/etc/tines-audit/tines-audit.toml:ro \
#     -e ACME_TINES_API_KEY -e TINES_AUDIT_WEB_TOKEN -p 127.0.0.1:8484:8484 tines-audit
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin tines-audit \
 && install -D -m 0755 target/release/tines-audit /out/tines-audit \
 && install -d -m 0750 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tines-audit /usr/local/bin/tines-audit
COPY --from=build --chown=65532:65532 /out/data /var/lib/tines-audit
USER 65532:65532
VOLUME ["/var/lib/tines-audit"]
# In a container the console must listen beyond loopback: set web.bind = "0.0.0.0:8484"
# in the config and publish the port on the host's loopback only (-p 127.0.0.1:8484:8484).
EXPOSE 8484
ENTRYPOINT ["/usr/local/bin/tines-audit"]
CMD ["run", "--config", "/etc/tines-audit/tines-audit.toml", "--log-format", "json"]
