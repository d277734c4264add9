# keygate: build a static binary, run it on distroless as nonroot.
# Fully qualified image names: podman and buildah have no default registry.
FROM docker.io/library/golang:1.26 AS build
# keygate version prints these: docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) .
ARG VERSION="" COMMIT=""
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/keygate ./cmd/keygate \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /keygate
# The database (and the generated admin token beside it) live on a volume.
COPY --from=build --chown=nonroot:nonroot /out/data /data
VOLUME /data
# In a container the admin API must listen on the container's interface to
# be reachable at all; who reaches it is decided where the port is
# published (docker run -p 127.0.0.1:9192:9192, a cluster-internal
# Service). Hence KEYGATE_ALLOW_INSECURE_ADMIN: without it keygate refuses an
# admin API beyond loopback that has no TLS (--tls-cert, --tls-key) or uses
# the token it generated. Set it to false to have keygate insist on both.
ENV KEYGATE_DB=/data/keygate.db \
    KEYGATE_GRPC_ADDR=:9191 \
    KEYGATE_ADMIN_ADDR=:9192 \
    KEYGATE_ALLOW_INSECURE_ADMIN=true
EXPOSE 9191 9192
USER nonroot:nonroot
ENTRYPOINT ["/keygate"]
CMD ["serve"]
