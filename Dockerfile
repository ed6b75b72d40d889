# The exporter for plain Docker and Kubernetes (linux/amd64, linux/arm64, linux/arm/v7):
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t balena-exporter .
#
# The build stage runs on the builder's own platform and cross-compiles with the same
# scripts/build-static as the release binaries and the balena images (Dockerfile.template),
# so no CPU emulation is needed and all three agree. The result is one static musl binary
# with Mozilla's roots built in, alone in a scratch image.
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm AS build
ARG TARGETARCH
ARG TARGETVARIANT
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv binutils file \
 && rm -rf /var/lib/apt/lists/*

ENV CARGO_TARGET_DIR=/build/target STATIC_TOOLS_DIR=/opt/static-tools

COPY scripts/build-static scripts/tools-venv scripts/requirements-static.txt scripts/
RUN case "$TARGETARCH$TARGETVARIANT" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      armv7) target=armv7-unknown-linux-musleabihf ;; \
      *) echo "balena-exporter: no static build for $TARGETARCH$TARGETVARIANT (amd64, arm64, arm/v7)" >&2; exit 1 ;; \
    esac \
 && echo "$target" >/target \
 && scripts/build-static --setup "$target"

# The dependencies, in a layer of their own: only the manifest and the lock file, with a stub
# for each target they name (scripts/stub-crate), built by the same script for the same target
# as the real build. This layer is reused until Cargo.toml, Cargo.lock or the recipe changes.
COPY Cargo.toml Cargo.lock ./
COPY scripts/stub-crate scripts/
RUN scripts/stub-crate \
 && DIST_DIR=/tmp/stub scripts/build-static "$(cat /target)" \
 && rm -rf /tmp/stub

# Then the crate's own sources, and nothing else: .dockerignore keeps every other file out of
# the build context, and scripts/check-dockerfiles fails if a COPY line would read one of
# another service, the docs, the workflows or the dashboards. Only this layer rebuilds when
# src/ changes. The benches Cargo.toml names stay stubs (a release build does not compile
# them); --touch makes cargo see src/ as newer than the stub build.
COPY src/ src/
RUN scripts/stub-crate --touch \
 && DIST_DIR=/out scripts/build-static "$(cat /target)" \
 && cp "/out/balena-exporter-$(cat /target)" /balena-exporter

FROM scratch
COPY --from=build /balena-exporter /balena-exporter
# nobody:nogroup; the exporter needs no file system access and listens above 1024.
USER 65534:65534
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD ["/balena-exporter", "--healthcheck"]
ENTRYPOINT ["/balena-exporter"]
