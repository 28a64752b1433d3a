"""README.md and docs/*.md: every command has a category and parses; node queries run.

The categories, tables and runners are in tests/docs/doc_commands.py (see its docstring);
tests/docs/test_doc_blocks.py runs the one-host blocks (issue 15).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import click
import pytest
import typer
from doc_commands import (
    ALL,
    BENCH,
    BENCH_DRIVER,
    CONTAINER,
    DEMO,
    DOCS,
    EXPECT,
    FEDNODE,
    MODULES,
    NOT_RUN,
    PARSE_ONLY,
    PARSE_ONLY_BLOCKS,
    PYTEST,
    ROOT,
    RUN_BLOCKS,
    SHARED_BLOCKS,
    SMALLER,
    Block,
    DocCommand,
    Runner,
    check_compose,
    check_synopsis,
    command_kind,
    fednode_args,
    first_command,
    is_synopsis,
    parse_fednode,
    run_block,
    shell_simple,
    shell_words,
    workspace,
)

from node.cli import app

pytestmark = pytest.mark.slow


def test_parsing_catches_wrong_options_and_values() -> None:
    with pytest.raises(click.NoSuchOption):
        parse_fednode(["start", "--data-dir", "n1", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        parse_fednode(["testnet", "up", "--nodes", "three"])
    with pytest.raises(click.UsageError):
        parse_fednode(["simulatte", "net.toml"])
    with pytest.raises(AssertionError, match="--wrokdir"):
        check_synopsis(["testnet", "run", "SCENARIO", "[--wrokdir", "DIR]"])


def test_unknown_commands_have_no_category() -> None:
    # What makes test_every_doc_command_has_a_category fail for a new kind of command.
    for line in ("kubectl apply -f node.yaml", "sudo fednode start", "echo hi"):
        assert command_kind(shell_words(line)) == "other"
    assert command_kind(shell_words("OMP_NUM_THREADS=1 .venv/bin/python bench/x.py")) == "bench"


def test_extraction_finds_the_known_commands() -> None:
    texts = [c.text for c in ALL]
    assert "fednode genesis show net.toml" in texts
    assert any(t.startswith(".venv/bin/python bench/bench_record_dp.py sentiment") for t in texts)
    assert any(t.startswith("fednode start -d ./node2") for t in texts)
    # Continuations are joined and comments dropped.
    assert any(t.endswith("--metrics 10.0.0.6:9100") for t in texts)
    assert not any("#" in t and "$(" not in t for t in texts)


def test_every_doc_command_has_a_category() -> None:
    run = {id(c) for block in (*RUN_BLOCKS, *SHARED_BLOCKS) for c in block}
    orphans = [
        str(c)
        for c in ALL
        if c.text not in NOT_RUN
        and command_kind(shell_words(c.text) if shell_simple(c.text) else ["?"]) == "other"
        and id(c) not in run  # echo, curl, NAME=value lines run with their block
    ]
    assert not orphans, "doc commands in no category (run, parse, or NOT_RUN):\n" + "\n".join(
        orphans
    )
    stale = [k for k in NOT_RUN if k not in {c.text for c in ALL}]
    assert not stale, f"NOT_RUN lists commands no doc has any more: {stale}"
    lines = {(c.doc, c.text) for c in ALL}
    for table in (PARSE_ONLY_BLOCKS, PARSE_ONLY, SMALLER, EXPECT):
        stale_keys = [k for k in table if k not in lines]
        assert not stale_keys, f"a table names lines no doc has any more: {stale_keys}"


@pytest.mark.parametrize("cmd", FEDNODE, ids=str)
def test_fednode_command_parses(cmd: DocCommand) -> None:
    words = fednode_args(shell_words(cmd.text.split(" | ")[0].split(" && ")[0].rstrip(" &")))
    if is_synopsis(cmd.text):
        check_synopsis(words)
    else:
        parse_fednode(words)


def test_bench_commands_parse() -> None:
    assert BENCH, "no bench command found in the docs"
    jobs = []
    for cmd in BENCH:
        variables: dict[str, str] = {}
        # a block may set C="--batch 8 ..." and use $C in later lines
        if cmd.block is not None:
            for other in ALL:
                m = re.match(r'^([A-Z][A-Z_]*)="?([^"]*)"?$', other.text)
                if other.doc == cmd.doc and other.block == cmd.block and m:
                    variables[m.group(1)] = m.group(2)
        words = shell_words(cmd.text, variables)
        assert (ROOT / words[1]).is_file(), f"{cmd}: no such script"
        jobs.append([words[1], words[2:]])
    out = subprocess.run(
        [sys.executable, "-c", BENCH_DRIVER, json.dumps(jobs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [f"{cmd}\n    {r}" for cmd, r in zip(BENCH, results, strict=True) if r]
    assert not bad, "bench commands the script does not accept:\n" + "\n".join(bad)


@pytest.mark.parametrize("cmd", DEMO, ids=str)
def test_demo_commands_parse(cmd: DocCommand) -> None:
    # scripts/demo.sh sets up the venv and then only runs `fednode testnet up "$@"`.
    assert 'exec .venv/bin/fednode testnet up "$@"' in (ROOT / "scripts/demo.sh").read_text()
    parse_fednode(["testnet", "up", *shell_words(cmd.text)[2:]])


def test_named_tests_and_modules_exist() -> None:
    import importlib.util

    assert PYTEST
    for cmd in PYTEST:
        words = shell_words(cmd.text)
        words = words[words.index("pytest") + 1 :]
        paths = [w for i, w in enumerate(words) if not w.startswith("-") and words[i - 1] != "-k"]
        for word in paths:
            path, _, name = word.partition("::")
            assert (ROOT / path).exists(), f"{cmd}: no such test path"
            if name:
                assert f"def {name}(" in (ROOT / path).read_text(), f"{cmd}: no test {name}"
        if "-k" in words:
            # `-k word`: some test of the named files has that word in its name
            word = words[words.index("-k") + 1]
            names = re.findall(r"def (test_\w+)", "".join((ROOT / p).read_text() for p in paths))
            assert any(word in n for n in names), f"{cmd}: no test matches -k {word}"
    for cmd in MODULES:
        assert importlib.util.find_spec(shell_words(cmd.text)[2]) is not None, str(cmd)


@pytest.mark.parametrize("cmd", CONTAINER, ids=str)
def test_container_commands_name_what_exists(cmd: DocCommand) -> None:
    words = shell_words(cmd.text)
    if words[0] == "docker":
        assert words[1] == "build"
        dockerfile = (ROOT / words[words.index("-f") + 1]).read_text()
        for j, w in enumerate(words):
            if w == "--build-arg":
                name = words[j + 1].split("=", 1)[0]
                assert re.search(rf"^ARG {name}\b", dockerfile, re.M), f"no ARG {name}"
    elif words[0] == "podman":
        inner = re.search(r'"\$\((docker-compose [^)]*)\)"', cmd.text)
        assert inner, cmd.text
        check_compose(shlex.split(inner.group(1)))
        parse_fednode(fednode_args(words[words.index("fednode") :]))
    else:
        check_compose(words)


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """./n1: the first node of a two-node digits network that has trained its one round."""
    runner = Runner(workspace(tmp_path_factory.mktemp("n1")), {}, {})
    try:
        for line in (
            "fednode genesis new net.toml --name lab --task digits --nodes 2 --rounds 1",
            "fednode init -d ./n1 --genesis net.toml",
            "fednode init -d ./n2 --genesis net.toml",
            "fednode start -d ./n1 -g net.toml --listen 127.0.0.1:7001 --shard 0",
            "fednode start -d ./n2 -g net.toml --listen 127.0.0.1:7002 -b 127.0.0.1:7001 --shard 1",
        ):
            runner.line(line)
        deadline = time.monotonic() + 120
        while json.loads(runner.line("fednode status -d ./n1 -f json")).get("round", 0) < 1:
            assert time.monotonic() < deadline, "the shared network did not train a round"
            time.sleep(1.0)
        yield runner
    finally:
        runner.close()


def test_doc_blocks_beside_a_running_node_run_as_written(running_node: Runner) -> None:
    # `fednode stop` blocks go last: the others need the node running.
    def stops(block: Block) -> bool:
        return all(fednode_args(first_command(c.text))[:1] == ["stop"] for c in block)

    assert SHARED_BLOCKS
    for block in sorted(SHARED_BLOCKS, key=stops):
        run_block(block, running_node)
    assert running_node.daemons["./n1"].wait(30) == 0


TOP = (
    "node",
    "aggregation",
    "privacy",
    "bench",
    "tests",
    "examples",
    "deploy",
    "scripts",
    "proto",
    "docs",
    "fednode_proto",
    ".ci",
)
REPO_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./*-]*)")


def test_every_repo_path_in_the_docs_exists() -> None:
    """Paths in code spans and links name files that exist (modules moved into layers)."""
    missing, checked = [], 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)\s]+)\)", text)
        for span in spans:
            for m in REPO_PATH.finditer(span):
                name = m.group(1).rstrip(".,;:/").split("::")[0]
                checked += 1
                hits = list(ROOT.glob(name)) if "*" in name else [ROOT / name]
                if not any(h.exists() for h in hits) and not (path.parent / name).exists():
                    missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert checked > 100, checked  # the pattern still finds the docs' paths
    assert not missing, "docs name paths that do not exist:\n" + "\n".join(sorted(set(missing)))


def _all_commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                sub = cmd.get_command(click.Context(cmd), name)
                assert sub is not None
                paths.append([*path, name])
                walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_help_of_every_command_runs() -> None:
    """`fednode COMMAND --help` (operations.md) for every command and group."""
    from typer.testing import CliRunner

    paths = _all_commands()
    assert ["testnet", "up"] in paths and ["certs", "issue"] in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output and "--help" in result.output, (path, result.output)
