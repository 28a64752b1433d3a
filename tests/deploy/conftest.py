"""The podman API socket that the container tests drive docker-compose against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # compose_net.py (importlib import mode)

from compose_net import FEDNODE_IMAGE, PROMETHEUS_IMAGE, run, unavailable


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """podman's Docker-compatible API on a private socket; yields docker-compose's env."""
    for tool in ("podman", "docker-compose"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install podman docker-compose)")
    for image in (FEDNODE_IMAGE, PROMETHEUS_IMAGE):
        if run(["podman", "image", "exists", image], check=False).returncode != 0:
            unavailable(f"image {image} is missing (run deploy/build-images.sh)")
    sock = tmp_path_factory.mktemp("podman") / "api.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman API socket did not appear"
            time.sleep(0.1)
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{sock}",
            "FEDNODE_IMAGE": FEDNODE_IMAGE,
            "FEDNODE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
            "COMPOSE_HTTP_TIMEOUT": "300",
        }
        yield env
    finally:
        service.terminate()
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
