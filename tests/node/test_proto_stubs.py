"""The committed gRPC stubs match the .proto sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "fednode_proto").rglob("*.py*"))
    committed = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "fednode_proto").rglob("*.py*")
        if "__pycache__" not in p.parts
    )
    assert fresh == committed, "stub files differ; run: .venv/bin/python proto/generate.py"
    for rel in fresh:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), (
            f"{rel} is stale; run: .venv/bin/python proto/generate.py"
        )
