"""Regenerate the Python stubs in ``fednode_proto/`` from the ``.proto`` sources here.

Usage (from the repository root)::

    .venv/bin/python proto/generate.py            # rewrite fednode_proto/v1/*_pb2*.py
    .venv/bin/python proto/generate.py --out DIR  # write into DIR instead (the staleness test)

The sources live under ``proto/fednode_proto/v1`` so that the generated modules import each
other as ``fednode_proto.v1.*``: the stub package cannot be called ``proto`` because
proto-plus owns that import name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def sources() -> list[Path]:
    """All .proto files, sorted so the output is stable."""
    return sorted((HERE / "fednode_proto" / "v1").glob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc (grpcio-tools) for every source into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{HERE}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(HERE)) for p in sources()],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    for pkg in (out / "fednode_proto", out / "fednode_proto" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated gRPC/protobuf stubs for fednode (do not edit)."""\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    ns = parser.parse_args(argv)
    generate(ns.out)
    print(f"generated {len(sources())} proto files into {ns.out / 'fednode_proto' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
