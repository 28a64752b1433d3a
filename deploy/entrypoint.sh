#!/bin/sh
# fednode container entrypoint.
#
# `start ...`: mint the node identity on first start (the data volume is empty then),
# add the TLS flags when FEDNODE_TLS_DIR names a directory made by `fednode certs issue`,
# then exec the daemon (PID 1 gets SIGTERM from `docker stop` and stops gracefully).
# Anything else is passed to `fednode` unchanged (`status`, `peers`, `certs ...`).
#
# Environment:
#   FEDNODE_HOME      data dir (default /data)
#   FEDNODE_GENESIS   genesis file used to mint the identity at the right difficulty
#   FEDNODE_TLS_DIR   directory with node.crt, node.key, ca.crt: serve and dial over mTLS
set -eu

: "${FEDNODE_HOME:=/data}"
export FEDNODE_HOME

if [ "${1:-}" = "start" ]; then
    if [ ! -f "$FEDNODE_HOME/identity.json" ]; then
        if [ -n "${FEDNODE_GENESIS:-}" ]; then
            fednode init --data-dir "$FEDNODE_HOME" --genesis "$FEDNODE_GENESIS"
        else
            fednode init --data-dir "$FEDNODE_HOME"
        fi
    fi
    if [ -n "${FEDNODE_TLS_DIR:-}" ]; then
        shift
        set -- start "$@" \
            --tls-cert "$FEDNODE_TLS_DIR/node.crt" \
            --tls-key "$FEDNODE_TLS_DIR/node.key" \
            --tls-ca "$FEDNODE_TLS_DIR/ca.crt"
    fi
fi

exec fednode "$@"
