# The Strangler image: the proxy (strangler), its echo upstream (strangler-echo)
# and redis-server, on Debian 12. See docs/CONTAINERS.md.

# --- build: the compiler, the -dev packages and the source ---
FROM debian:bookworm-slim AS build

WORKDIR /src
# The dependency layer first, so that a source change does not reinstall it.
COPY scripts/install-deps scripts/install-deps
# The build set (make, the compiler, meson and every -dev package, the tests'
# included, since meson configures them with the build). None of this reaches
# the runtime image.
RUN scripts/install-deps build

COPY . .
# The project's own build (meson's debugoptimized: -O2 with assertions kept,
# which the error policy relies on, and link-time optimisation). Debug info is stripped for the image; a
# crash backtrace can be symbolized with the unstripped build/strangler of the
# same commit.
RUN make build \
 && mkdir -p /out \
 && strip --strip-debug -o /out/strangler build/strangler \
 && strip --strip-debug -o /out/strangler-echo build/strangler-echo

# The Debian packages that hold the shared libraries the two programs load,
# read from the binaries themselves, so the list cannot drift from the link
# line. Today: libevent-2.1-7 libhiredis0.14 libjsoncpp25 libre2-9 libjsonnet0
# (libnghttp2-14 joins once the HTTP/2 codec is linked), plus libc6,
# libstdc++6 and libgcc-s1, which the base image already has.
RUN set -e; \
    for lib in $(ldd /out/strangler /out/strangler-echo | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")"; \
    done > /tmp/owners; \
    cut -d: -f1 /tmp/owners | sort -u > /out/runtime-packages; \
    cat /out/runtime-packages

# --- runtime: the two programs, their libraries, redis-server ---
FROM debian:bookworm-slim

COPY --from=build /out/runtime-packages /tmp/runtime-packages
COPY scripts/install-deps /tmp/install-deps
# redis-server (the "run" set of install-deps) is included on purpose, although
# a deployment with STRANGLER_REDIS_URL never starts it:
#  - `docker run strangler` with no Redis at all works, as `strangler serve`
#    does on a host: the supervisor starts a private redis-server (in /tmp);
#  - docker-compose.yml runs its Redis from this same image, so the whole
#    stack needs one image built from this file and no registry.
# It costs about 13 MB (with redis-tools, whose redis-cli serves the compose
# health check, and libssl3). bash, already in the base, serves the image's
# health check, so curl is not installed.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $(cat /tmp/runtime-packages) \
 && /tmp/install-deps run \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/runtime-packages /tmp/install-deps

COPY --from=build /out/strangler /out/strangler-echo /usr/local/bin/
COPY conf/ /etc/strangler/

# A fixed numeric user, so that orchestrators can check runAsNonRoot.
# /var/lib/strangler is the Redis data folder of docker-compose.yml.
RUN groupadd --system --gid 10001 strangler \
 && useradd --system --uid 10001 --gid strangler --home-dir /var/lib/strangler \
      --shell /usr/sbin/nologin strangler \
 && install -d -o strangler -g strangler -m 0750 /var/lib/strangler
USER 10001:10001
WORKDIR /var/lib/strangler

# In a container the admin server must be reachable by the orchestrator's
# probes, so it listens on every interface rather than on loopback.
ENV STRANGLER_LISTEN=0.0.0.0:8080 \
    STRANGLER_ADMIN_LISTEN=0.0.0.0:9090 \
    STRANGLER_RULES=/etc/strangler/rules.json
EXPOSE 8080 9090

# GET /healthz on the admin port, with bash's /dev/tcp (no curl in the image).
# Docker honours this; OCI-format builds (podman's default) drop it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${STRANGLER_ADMIN_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM reaches the supervisor (PID 1 here, which reaps its own children):
# readiness fails, in-flight requests drain for up to STRANGLER_DRAIN_TIMEOUT
# (30s), exit 0. Give `docker stop` more than that: docker stop -t 45.
STOPSIGNAL SIGTERM
CMD ["strangler", "serve"]
