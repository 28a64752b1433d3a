#!/bin/sh
# Make the CA (once) and a certificate per node name given as arguments (once each).
# Used by the `certs` service of docker-compose.tls.yml; runs as the image's fednode user.
# Each node's certificate names its compose service (what peers dial: --advertise NAME:7420)
# plus 127.0.0.1 and localhost.
set -eu

ca="${FEDNODE_CA_DIR:-/ca}"
out="${FEDNODE_CERTS_DIR:-/certs}"

if [ ! -f "$ca/ca.crt" ]; then
    fednode certs init --out "$ca" --name "fednode compose testnet CA"
fi
for name in "$@"; do
    if [ ! -f "$out/$name/node.crt" ]; then
        fednode certs issue --ca "$ca" --name "$name" \
            --host "$name" --host 127.0.0.1 --host localhost --out "$out/$name"
    fi
done
