# connect-chatd: the daemon in a small non-root image.
#
#   docker build -t connect-chatd .
#   docker run --rm --read-only \
#     -v "$PWD/etc:/etc/connect-chatd:ro" -v connect-chatd-state:/var/lib/connect-chatd \
#     connect-chatd
#
# See README.md, "Deployment → Container", and deploy/kubernetes/ for a pod running it
# as a sidecar.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The README's build command. The binary is dynamically linked against glibc (and
# libgcc_s), which the distroless cc image below provides from the same Debian release.
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/connect-chatd /out/connect-chatd \
 && install -d -m 0700 /out/state

# glibc, libgcc_s, a CA bundle (/etc/ssl/certs/ca-certificates.crt, read by the HTTPS
# client's platform verifier), tzdata; no shell, no package manager; user nonroot is
# 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/connect-chatd /usr/local/bin/connect-chatd
# The journal (state_dir's default), owned by nonroot so that a new volume mounted
# here starts out writable by it. Mount a volume: the root can then be read-only.
COPY --from=build --chown=65532:65532 /out/state /var/lib/connect-chatd
USER 65532:65532
VOLUME ["/var/lib/connect-chatd"]
# SIGTERM closes every session with a close frame, journals its last Items and exits 0
# within shutdown_timeout (10 s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/connect-chatd"]
CMD ["run", "--config", "/etc/connect-chatd/connect-chatd.toml"]
