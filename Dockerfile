# syntax=docker/dockerfile:1
#
# Every Gatehouse image, from one file and one build of the workspace.
#
#   docker build --target api    -t gatehouse-api .
#   docker build --target worker -t gatehouse-worker .
#   docker compose up --build          # builds both
#   docker build --target botfactory -t gatehouse-botfactory .   # example apps
#   docker build --target chat       -t gatehouse-chat .         # (examples/)
#   docker compose --profile apps up --build                     # builds all four
#
# Stages: chef (toolchain + cargo-chef) -> planner (recipe.json from the
# manifests) -> builder (cook the dependencies of every workspace binary =
# cached layer, then build every binary at once) -> one small runtime stage
# per binary (distroless, non-root, CA certificates only).
#
# The builder is shared: BuildKit runs identical stages once, so the first
# `docker compose up --build` compiles the dependency tree once for both
# images, and a second image costs only its COPY. To add an image for another
# workspace binary (examples/chat -> `chat`), add one stanza like `worker`
# below (before `api`, which stays last so a plain `docker build .` is the API):
#
#   FROM runtime AS chat
#   COPY --from=builder /app/target/release/chat /usr/local/bin/chat
#   EXPOSE <port>
#   ENTRYPOINT ["/usr/local/bin/chat"]
#
# Base images are pinned by digest: `1.95.0-slim-bookworm` and `nonroot` are
# rebuilt in place (Debian security updates), so the tag alone floats. These
# digests were written without registry access (2026-11-30): each is the
# digest several independent public projects pin for the same tag. Re-resolve
# them before a release, and to update (e.g. monthly, or for a Debian
# security fix) resolve the tag again and replace the digest:
#   docker buildx imagetools inspect rust:1.95.0-slim-bookworm   # "Digest:"
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# (or `crane digest <image>`, `skopeo inspect docker://<image>`). Keep the
# Rust version equal to rust-toolchain.toml's channel; scripts/check-docker.sh
# checks both and that every FROM is pinned.

ARG CARGO_CHEF_VERSION=0.1.78

# ---------------------------------------------------------------------------
FROM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
    && rm -rf /usr/local/cargo/registry /usr/local/cargo/git
WORKDIR /app

# ---------------------------------------------------------------------------
# The build context is an allow-list (.dockerignore): the workspace manifests,
# the members' sources and migrations. Docs, bench/, fuzz/, tests, deploy
# files and scripts are not in it, so changing them reuses every layer.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------
FROM chef AS builder
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock change.
# `--workspace --bins` here and below: the same flags, so the build reuses
# every cooked dependency.
COPY --from=planner /app/recipe.json recipe.json
RUN --mount=type=cache,id=gatehouse-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=gatehouse-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked --workspace --bins --recipe-path recipe.json
# Full source: migrations/, shared/data/, templates etc. are embedded at compile time.
COPY . .
RUN --mount=type=cache,id=gatehouse-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=gatehouse-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked --workspace --bins

# ---------------------------------------------------------------------------
# glibc + libgcc + CA certificates (for rediss:// and SMTP TLS), no shell,
# uid/gid 65532 ("nonroot"). Numeric USER so Kubernetes runAsNonRoot can
# verify it.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
LABEL org.opencontainers.image.licenses="MIT"
ENV RUST_LOG=info \
    LOG_FORMAT=json
USER 65532:65532

# ---------------------------------------------------------------------------
FROM runtime AS worker
LABEL org.opencontainers.image.title="gatehouse-worker" \
      org.opencontainers.image.description="Gatehouse background worker"
COPY --from=builder /app/target/release/gatehouse-worker /usr/local/bin/gatehouse-worker
ENV WORKER_ADDR=0.0.0.0:9000
EXPOSE 9000
# No curl in distroless: the binary probes its own health endpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/gatehouse-worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gatehouse-worker"]

# ---------------------------------------------------------------------------
# The example apps on Gatehouse (examples/, compose profile "apps"). They
# verify Gatehouse's tokens with gatehouse-verify and hold no secret.
FROM runtime AS botfactory
LABEL org.opencontainers.image.title="gatehouse-botfactory" \
      org.opencontainers.image.description="BotFactory: bots per client, identity from Gatehouse"
COPY --from=builder /app/target/release/botfactory /usr/local/bin/botfactory
ENV APP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/botfactory", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/botfactory"]

FROM runtime AS chat
LABEL org.opencontainers.image.title="gatehouse-chat" \
      org.opencontainers.image.description="Real-time chat on Gatehouse (WebSocket, Redis fan-out)"
COPY --from=builder /app/target/release/chat /usr/local/bin/chat
ENV APP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/chat", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/chat"]

# ---------------------------------------------------------------------------
# Last, so a plain `docker build .` gives the API image.
FROM runtime AS api
LABEL org.opencontainers.image.title="gatehouse-api" \
      org.opencontainers.image.description="Gatehouse authentication API"
COPY --from=builder /app/target/release/gatehouse-api /usr/local/bin/gatehouse-api
ENV API_ADDR=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/gatehouse-api", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gatehouse-api"]
