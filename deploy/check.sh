#!/usr/bin/env bash
# Validate the container deployment without a Docker engine (what CI runs):
#   - every compose file and profile combination through `docker-compose config`
#     (Debian's docker-compose, installed with apt when missing);
#   - the services each combination starts;
#   - the shell scripts the image runs (sh -n), the Grafana dashboard JSON, the Prometheus
#     and Grafana provisioning YAML.
# Usage: deploy/check.sh            (from anywhere; exits non-zero on the first problem)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

if ! command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose missing: installing Debian's package"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
echo "using docker-compose $(docker-compose version --short)"

base=(-f deploy/docker-compose.yml)
tls=(-f deploy/docker-compose.yml -f deploy/docker-compose.tls.yml)

# expect_services LABEL "EXPECTED SERVICES" "PROFILES" COMPOSE-FILE-ARGS...
# docker-compose 1.29's `config` prints every service whatever --profile says, so the
# services a combination starts are computed from the merged config's `profiles` keys.
expect_services() {
    local label="$1" expected="$2" profiles="$3"
    shift 3
    local args=("$@") p
    for p in $profiles; do args+=(--profile "$p"); done
    local got
    got="$(docker-compose "${args[@]}" config | PROFILES="$profiles" python3 -c '
import os, sys, yaml
active = set(os.environ["PROFILES"].split())
services = yaml.safe_load(sys.stdin)["services"]
print(" ".join(sorted(n for n, s in services.items()
                      if not s.get("profiles") or active & set(s["profiles"]))))
')"
    if [ "$got" != "$expected" ]; then
        echo "FAIL $label: services [$got], expected [$expected]" >&2
        exit 1
    fi
    echo "ok   $label: $got"
}

expect_services "base" "node0 node1 node2" "" "${base[@]}"
expect_services "byzantine" "node0 node1 node2 node3" "byzantine" "${base[@]}"
expect_services "monitoring" "grafana node0 node1 node2 prometheus" "monitoring" "${base[@]}"
expect_services "byzantine+monitoring" "grafana node0 node1 node2 node3 prometheus" \
    "byzantine monitoring" "${base[@]}"
expect_services "tls" "certs node0 node1 node2" "" "${tls[@]}"
expect_services "tls+byzantine+monitoring" "certs grafana node0 node1 node2 node3 prometheus" \
    "byzantine monitoring" "${tls[@]}"

# The TLS variant must hand every node its certificate directory.
tls_dirs="$(docker-compose "${tls[@]}" --profile byzantine config | grep -c 'FEDNODE_TLS_DIR: /certs/node[0-9]')"
if [ "$tls_dirs" != "4" ]; then
    echo "FAIL tls: $tls_dirs of 4 nodes have FEDNODE_TLS_DIR" >&2
    exit 1
fi
echo "ok   tls: every node has FEDNODE_TLS_DIR"

for script in deploy/entrypoint.sh deploy/make-certs.sh; do
    sh -n "$script"
    echo "ok   sh -n $script"
done

python3 - <<'PY'
import json, pathlib, sys
try:
    import yaml
except ImportError:  # docker-compose depends on PyYAML, so this is rare
    yaml = None
dash = json.loads(pathlib.Path("deploy/grafana/dashboards/fednode.json").read_text())
assert dash["panels"], "dashboard has no panels"
for p in dash["panels"]:
    assert p["targets"] and all(t["expr"] for t in p["targets"]), f"panel {p['title']!r} has no query"
print(f"ok   grafana dashboard: {len(dash['panels'])} panels")
if yaml is not None:
    for path in ["deploy/prometheus.yml", *map(str, pathlib.Path("deploy/grafana/provisioning").rglob("*.yml"))]:
        yaml.safe_load(pathlib.Path(path).read_text())
        print(f"ok   yaml {path}")
PY
echo "deploy checks passed"
