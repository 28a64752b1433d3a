"""Every command in README.md and docs/*.md runs as written, or at least parses (issue 15).

Commands are read from the fenced ``sh``/``bash``/``console`` blocks (and untagged blocks
whose first line is a command) of README.md and docs/*.md, and from inline code spans in
prose that a reader would copy (``fednode ...`` with an option, ``.venv/bin/python bench/...``,
``bash scripts/...``). Each one is in exactly one category:

run
    A fenced block whose commands need one host runs in a fresh directory (with ``examples``,
    ``bench``, ``deploy`` and ``.venv`` linked in, as in a checkout), line by line in bash with
    the venv's ``fednode`` first on PATH; every line must exit 0 and print something. A
    ``fednode start`` runs in the background until ``fednode status`` answers. Blocks that
    ask a running node (``status``, ``peers``, ``privacy``, ``export``, ``health``, the
    dashboard URL) run beside a two-node network that has trained a few rounds in ``./n1``.
parse
    Every ``fednode`` command (run or not) is parsed by the real click command tree without
    being invoked: the command path, every option and every value's type must be accepted.
    Every bench command is parsed by its script's own argparse parser (the script runs up to
    ``parse_args`` and stops). Synopses with placeholders (``[--nodes N]``, ``DIR``) have
    each option checked for existence. Compose and Dockerfile commands have their files,
    profiles, services and build arguments checked.
NOT_RUN
    One table below: commands that are neither, with the reason (root, a second host, CI
    itself). A doc command in no category fails :func:`test_every_doc_command_has_a_category`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer

from node.cli import app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A line that starts like one of these is a command a reader would type.
COMMAND_START = re.compile(
    r"^(\$ |fednode |\.venv/bin/|python -m |bash |PYTHONPATH=|OMP_NUM_THREADS=|docker|podman |"
    r"apt-get |eval |\.ci/|source |export [A-Z_]+=|curl |echo |[A-Z][A-Z_]*=\S)"
)
SHELL_LANGS = {"sh", "bash", "console", "shell"}
INLINE = re.compile(r"`((?:fednode|\.venv/bin/python|bash scripts/|python -m node)[^`]*)`")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

#: Commands that are neither run nor parsed here, and why. Keys are the command as the doc
#: writes it (continuations joined, comments removed).
NOT_RUN: dict[str, str] = {
    "bash scripts/test.sh": "the whole test suite: CI itself (.ci/run) runs it",
    "bash scripts/demo.sh": (
        "README's main command (setup + 3-node testnet, ~20 s); its only action is "
        "`fednode testnet up`, run here with the operator guide's settings"
    ),
    "source .venv/bin/activate": "puts fednode on PATH; the test does the same with PATH",
    "apt-get install podman docker-compose debootstrap runc": "root and Debian's network",
    "bash deploy/build-images.sh": "root (debootstrap, podman); tests/deploy/test_containers.py",
    "podman system service --time=0 unix:///run/fednode-podman.sock &": "root (podman)",
    "export DOCKER_HOST=unix:///run/fednode-podman.sock": "environment for compose (root)",
    "export FEDNODE_PROMETHEUS_IMAGE=fednode-prometheus:latest": "environment for compose",
    'eval "$(.ci/postgres.sh)"': "root (apt-get postgresql); CI runs it before the suite",
    ".ci/postgres.sh stop": "stops the CI PostgreSQL server",
    ".venv/bin/python proto/generate.py": (
        "rewrites fednode_proto/ in the checkout; tests/node/test_proto_stubs.py checks "
        "that the committed stubs are what it generates"
    ),
}


@dataclass(frozen=True)
class DocCommand:
    """One command of a doc: where it is, its text, and the block it belongs to."""

    doc: str
    line: int
    text: str
    block: int | None  # index of its fenced block in the doc; None for inline spans

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _logical_lines(body: str) -> list[tuple[int, str]]:
    """Join backslash continuations, drop comments and prompts; keep (offset, line)."""
    lines: list[tuple[int, str]] = []
    raw = body.split("\n")
    console = any(r.startswith("$ ") for r in raw)
    i = 0
    while i < len(raw):
        start, text = i, raw[i]
        while text.rstrip().endswith("\\") and i + 1 < len(raw):
            i += 1
            text = text.rstrip()[:-1].rstrip() + " " + raw[i].strip()
        i += 1
        if console:
            if not text.startswith("$ "):
                continue  # output shown in the doc
            text = text[2:]
        text = _strip_comment(text).strip()
        if text:
            lines.append((start, text))
    return lines


def _strip_comment(text: str) -> str:
    """Remove a trailing `` # ...`` comment that is outside quotes."""
    quote = ""
    for j, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (j == 0 or text[j - 1].isspace()):
            return text[:j]
    return text


def doc_commands() -> list[DocCommand]:
    """Every command of README.md and docs/*.md, in document order."""
    found: list[DocCommand] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        fenced_spans = []
        for index, m in enumerate(FENCE.finditer(text)):
            fenced_spans.append((m.start(), m.end()))
            body = m.group(2)
            first = next((ln for ln in body.splitlines() if ln.strip()), "")
            if m.group(1) not in SHELL_LANGS and not (
                m.group(1) == "" and COMMAND_START.match(first)
            ):
                continue
            base = text[: m.start(2)].count("\n") + 1
            for offset, line in _logical_lines(body):
                found.append(DocCommand(name, base + offset, line, index))
        for m in INLINE.finditer(text):
            if any(a <= m.start() < b for a, b in fenced_spans):
                continue
            span = m.group(1).strip()
            words = span.split()
            if span.startswith("fednode") and not any(w.startswith("-") for w in words):
                continue  # a command's name in prose, not a command line
            if span.startswith("python -m node") and len(words) < 4:
                continue
            found.append(DocCommand(name, text[: m.start()].count("\n") + 1, span, None))
    return found


# --------------------------------------------------------------------------- shell words


def _expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(
        r"\$(\w+)|\$\{(\w+)\}",
        lambda m: variables.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def _argv(text: str, variables: dict[str, str] | None = None) -> list[str]:
    """The words of a simple command, without leading ``VAR=value`` assignments."""
    words = shlex.split(_expand(text, variables or {}))
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def _command_kind(words: list[str]) -> str:
    if not words:
        return "empty"
    if words[0] == "fednode" or words[:3] == [".venv/bin/python", "-m", "node"]:
        return "fednode"
    if words[0] == ".venv/bin/python" and len(words) > 1 and words[1].startswith("bench/"):
        return "bench"
    if words[0] == "bash" and len(words) > 1 and words[1] == "scripts/demo.sh":
        return "demo"
    if words[:3] == [".venv/bin/python", "-m", "pytest"]:
        return "pytest"
    if words[:3] == ["python", "-m", "node.testnet.netns"]:
        return "module"
    if words[0] in ("docker-compose", "docker") or words[:2] == ["podman", "exec"]:
        return "container"
    return "other"


def _fednode_words(words: list[str]) -> list[str]:
    """The arguments after ``fednode`` (or ``python -m node``); [] for other commands."""
    if words[:1] == ["fednode"]:
        return words[1:]
    return words[3:] if words[:3] == [".venv/bin/python", "-m", "node"] else []


# --------------------------------------------------------------------------- parsing


def parse_fednode(args: list[str]) -> None:
    """Parse ``fednode ARGS`` with the real click tree without invoking anything."""
    cmd: click.Command = typer.main.get_command(app)
    try:
        ctx = cmd.make_context("fednode", list(args))
        while isinstance(cmd, click.Group):
            # click 8.2 keeps a group's subcommand words apart (protected_args is deprecated)
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                return
            name, sub, rest = cmd.resolve_command(ctx, rest)
            assert name is not None and sub is not None
            cmd = sub
            ctx = cmd.make_context(name, rest, parent=ctx)
    except click.exceptions.Exit:
        return  # --help, --version


def check_synopsis(args: list[str]) -> None:
    """For a synopsis with placeholders: the command path and every option exist."""
    cmd: click.Command = typer.main.get_command(app)
    words = [w.strip("[]") for w in args]
    ctx = click.Context(cmd)
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        sub = cmd.get_command(ctx, words[0])
        if sub is None:
            break  # a placeholder (COMMAND) or `new | show`
        cmd, words = sub, words[1:]
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    known |= {"--help", "-h"}
    for w in words:
        flag = w.split("=", 1)[0]
        if flag.startswith("-") and flag not in known:
            raise AssertionError(f"{cmd.name}: no option {flag}")


def is_synopsis(text: str) -> bool:
    """A usage line with placeholders, not a command to copy."""
    return bool(re.search(r"\[|\.\.\.|\s\|\s|\b[A-Z]{2,}\b(?!=)", text))


# --------------------------------------------------------------------------- tests


ALL = doc_commands()


def test_parsing_catches_wrong_options_and_values() -> None:
    with pytest.raises(click.NoSuchOption):
        parse_fednode(["start", "--data-dir", "n1", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        parse_fednode(["testnet", "up", "--nodes", "three"])
    with pytest.raises(click.UsageError):
        parse_fednode(["simulatte", "net.toml"])
    with pytest.raises(AssertionError, match="--wrokdir"):
        check_synopsis(["testnet", "run", "SCENARIO", "[--wrokdir", "DIR]"])


def test_extraction_finds_the_known_commands() -> None:
    texts = [c.text for c in ALL]
    assert "fednode genesis show net.toml" in texts
    assert any(t.startswith(".venv/bin/python bench/bench_record_dp.py sentiment") for t in texts)
    assert any(t.startswith("fednode start -d ./node2") for t in texts)
    # Continuations are joined and comments dropped.
    assert any(t.endswith("--metrics 10.0.0.6:9100") for t in texts)
    assert not any("#" in t and "$(" not in t for t in texts)


def test_every_doc_command_has_a_category() -> None:
    orphans = [
        str(c)
        for c in ALL
        if c.text not in NOT_RUN
        and _command_kind(_argv(c.text) if _shell_simple(c.text) else ["?"]) == "other"
        and not _is_shell_plumbing(c.text)
    ]
    assert not orphans, "doc commands in no category (run, parse, or NOT_RUN):\n" + "\n".join(
        orphans
    )
    stale = [k for k in NOT_RUN if k not in {c.text for c in ALL}]
    assert not stale, f"NOT_RUN lists commands no doc has any more: {stale}"


def _shell_simple(text: str) -> bool:
    try:
        shlex.split(text)
    except ValueError:
        return False
    return True


def _is_shell_plumbing(text: str) -> bool:
    """Variable assignments and echo/curl lines of a run block (run, not parsed)."""
    return bool(re.match(r"^([A-Z][A-Z_]*=\S+$|echo |curl )", text))


FEDNODE = [
    c
    for c in ALL
    if c.text not in NOT_RUN
    and _shell_simple(c.text)
    and _command_kind(_argv(c.text.split("|")[0])) == "fednode"
]


@pytest.mark.parametrize("cmd", FEDNODE, ids=str)
def test_fednode_command_parses(cmd: DocCommand) -> None:
    words = _fednode_words(_argv(cmd.text.split(" | ")[0].split(" && ")[0].rstrip(" &")))
    if is_synopsis(cmd.text):
        check_synopsis(words)
    else:
        parse_fednode(words)


BENCH = [c for c in ALL if _shell_simple(c.text) and _command_kind(_argv(c.text)) == "bench"]
DEMO = [c for c in ALL if _shell_simple(c.text) and _command_kind(_argv(c.text)) == "demo"]

# Runs each bench script as ``__main__`` up to its argparse ``parse_args`` and stops there:
# the script's own parser judges the doc's options and values, and nothing is benchmarked.
BENCH_DRIVER = r"""
import argparse, io, json, runpy, sys
class Parsed(Exception):
    pass
original = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    original(self, args, namespace)
    raise Parsed()
argparse.ArgumentParser.parse_args = parse_args
# A doc writes options in full: no argparse prefix matching (--hundred-only, not --hundred).
argparse.ArgumentParser._get_option_tuples = lambda self, option_string: []
results = []
for script, argv in json.loads(sys.argv[1]):
    sys.argv = [script, *argv]
    sys.path.insert(0, script.rsplit("/", 1)[0])
    err, sys.stderr = sys.stderr, io.StringIO()
    try:
        runpy.run_path(script, run_name="__main__")
        results.append("finished without calling parse_args")
    except Parsed:
        results.append("")
    except SystemExit as exc:
        results.append(f"exit {exc.code}: {sys.stderr.getvalue().strip()}")
    finally:
        sys.stderr = err
        sys.path.pop(0)
print(json.dumps(results))
"""


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
        words = _argv(cmd.text, variables)
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
    parse_fednode(["testnet", "up", *_argv(cmd.text)[2:]])


PYTEST = [c for c in ALL if _shell_simple(c.text) and _command_kind(_argv(c.text)) == "pytest"]
MODULES = [c for c in ALL if _shell_simple(c.text) and _command_kind(_argv(c.text)) == "module"]


def test_named_tests_and_modules_exist() -> None:
    import importlib.util

    for cmd in PYTEST:
        for word in _argv(cmd.text)[3:]:
            if not word.startswith("-"):
                assert (ROOT / word.split("::")[0]).exists(), f"{cmd}: no such test path"
    for cmd in MODULES:
        assert importlib.util.find_spec(_argv(cmd.text)[2]) is not None, str(cmd)


CONTAINER = [
    c for c in ALL if _shell_simple(c.text) and _command_kind(_argv(c.text)) == "container"
]


def _check_compose(words: list[str]) -> None:
    """``docker-compose -f F... [--profile P]... SUB [opts] [services]``: all exist."""
    import yaml

    files, profiles, i = [], [], 1
    while i < len(words) and words[i].startswith("-"):
        if words[i] == "-f":
            files.append(words[i + 1])
        elif words[i] == "--profile":
            profiles.append(words[i + 1])
        i += 2
    assert files, "compose commands in the docs name their file"
    services: dict[str, dict[str, object]] = {}
    for f in files:
        assert (ROOT / f).is_file(), f"no compose file {f}"
        services.update(yaml.safe_load((ROOT / f).read_text())["services"])
    known_profiles = {p for svc in services.values() for p in svc.get("profiles", [])}  # type: ignore[attr-defined]
    assert set(profiles) <= known_profiles, f"unknown profile in {profiles}"
    sub, rest = words[i], words[i + 1 :]
    assert sub in {"up", "down", "exec", "ps", "logs", "build"}, f"compose {sub}?"
    names = [w for w in rest if not w.startswith("-")]
    if sub == "exec":
        assert names[0] in services, f"no service {names[0]}"
        parse_fednode(_fednode_words(rest[rest.index("fednode") :]))
    else:
        assert set(names) <= set(services), f"unknown services {set(names) - set(services)}"


@pytest.mark.parametrize("cmd", CONTAINER, ids=str)
def test_container_commands_name_what_exists(cmd: DocCommand) -> None:
    words = _argv(cmd.text)
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
        _check_compose(shlex.split(inner.group(1)))
        parse_fednode(_fednode_words(words[words.index("fednode") :]))
    else:
        _check_compose(words)


# --------------------------------------------------------------------------- running

#: Fenced blocks that are parsed (above) but not run, keyed by (doc, first command), and why.
PARSE_ONLY_BLOCKS: dict[tuple[str, str], str] = {
    (
        "README.md",
        "fednode genesis new net.toml --task text-classification --model ./my-bert "
        "--data reviews.csv",
    ): (
        "the reader's own Hugging Face folders and data; docs/user-models.md's runnable "
        "lines are run, tests/node/test_user_models_network.py runs such networks"
    ),
    ("README.md", "source .venv/bin/activate"): (
        "README's quick start: run as written by tests/node/test_readme_quickstart.py"
    ),
    ("docs/deploy.md", "fednode init --data-dir /var/lib/fednode --genesis net.toml"): (
        "a server's data dir under /var/lib and a second host (host-a, 10.0.0.6)"
    ),
    (
        "docs/deploy.md",
        "fednode start ... --tls-cert host-b/node.crt --tls-key host-b/node.key "
        "--tls-ca host-b/ca.crt",
    ): "a synopsis (`...` is the start line above)",
    ("docs/deploy.md", "fednode health -d /var/lib/fednode"): "a server and a second host",
    (
        "docs/operations.md",
        "fednode start -d ./n2 -g net.toml --listen 127.0.0.1:7002 -b 127.0.0.1:7001 --shard 1",
    ): ("the second node of a network whose first node is ./n1, and a server with PostgreSQL"),
    ("docs/operations.md", "fednode ban 3fa2c1 -d ./n1"): (
        "an example node id; tests/node/test_cli_commands.py bans a real peer"
    ),
    (
        "docs/faults.md",
        ".venv/bin/python bench/bench_scenarios.py --nodes 8 --write-docs --json "
        "/tmp/fnt-bench2/bench.json",
    ): "a 31-minute benchmark on network namespaces (root)",
    ("docs/user-models.md", "fednode export -d ./node1 --out ./adapter"): (
        "a node of a Hugging Face task; tests/node/test_user_models_network.py exports one"
    ),
}

#: Single lines of run blocks that are parsed but not run, keyed by (doc, command), and why.
PARSE_ONLY: dict[tuple[str, str], str] = {
    (
        "docs/operations.md",
        "fednode health -a 10.0.0.5:7420 --tls-ca ca.crt --tls-cert c.crt --tls-key c.key",
    ): "a second host",
    (
        "docs/user-models.md",
        "fednode genesis new net.toml --task text-classification --model "
        "./my-bert --data reviews.csv --text-column review --label-column stars [--labels neg,pos] "
        "[--learner sgd|spsa] [--lora-rank 8 --lora-alpha 16 --lora-targets query,value]",
    ): ("a synopsis over the reader's own model folder"),
    (
        "docs/user-models.md",
        "fednode genesis new net.toml --task causal-lm --model ./my-gpt --data notes.jsonl",
    ): "the reader's own model folder",
}


#: Lines run with fewer nodes or rounds than written (options appended: the last one wins),
#: so the whole file stays within about a minute of CI; every other option is as written.
SMALLER: dict[tuple[str, str], str] = {
    ("docs/operations.md", "fednode testnet up --nodes 3 --task digits --rounds 10"): (
        "--nodes 2 --rounds 2"
    ),
    (
        "docs/user-models.md",
        "PYTHONPATH=examples/flower_clientapp fednode testnet up --task "
        "digits --learner flower --flower-client digits_app:app --flower-initial digits_app:Net",
    ): ("--nodes 2 --rounds 2"),
    ("docs/training.md", "fednode simulate net.toml --out sim"): "--nodes 3 --rounds 2",
}

#: A block that uses this file without making it runs after the line that makes it (the
#: operator guide's first line; the reader has it from the step before).
GIVEN_GENESIS = "fednode genesis new net.toml --name lab --task digits"

Block = list[DocCommand]


def _blocks() -> list[Block]:
    blocks: dict[tuple[str, int], Block] = {}
    for c in ALL:
        if c.block is not None:
            blocks.setdefault((c.doc, c.block), []).append(c)
    return list(blocks.values())


def _words(text: str) -> list[str]:
    """The first simple command of a line (before a pipe, ``&&`` or a trailing ``&``)."""
    return _argv(text.split(" | ")[0].split(" && ")[0].rstrip(" &"))


def _is_fednode(text: str) -> bool:
    return _shell_simple(text) and _command_kind(_words(text)) == "fednode"


def _makes_a_node(block: Block) -> bool:
    return any(
        _fednode_words(_words(c.text))[:1] in (["init"], ["start"])
        for c in block
        if _is_fednode(c.text)
    )


def _asks_a_running_node(block: Block) -> bool:
    """A block that queries ./n1 without making it: run beside the shared running node."""
    return not _makes_a_node(block) and any(
        re.search(r"(-d|--data-dir) \./n1\b|=\./n1$|\./n1/", c.text) for c in block
    )


RUN_BLOCKS: list[Block] = []
SHARED_BLOCKS: list[Block] = []
_seen: set[tuple[str, ...]] = set()
for _block in _blocks():
    if (_block[0].doc, _block[0].text) in PARSE_ONLY_BLOCKS:
        continue
    if not any(_is_fednode(c.text) for c in _block) and not _asks_a_running_node(_block):
        continue  # containers, root-only setup: parsed or in NOT_RUN above
    _key = tuple(c.text for c in _block)
    if _key in _seen:
        continue  # the same lines shown again with their output: run once
    _seen.add(_key)
    (SHARED_BLOCKS if _asks_a_running_node(_block) else RUN_BLOCKS).append(_block)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workspace(path: Path) -> Path:
    """A directory that looks like the checkout to relative paths in the docs."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("examples", "bench", "deploy", ".venv"):
        if (ROOT / name).exists() and not (path / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "OMP_NUM_THREADS": "1",
    }


@dataclass
class Runner:
    """Runs doc lines in one directory as a reader would in one shell."""

    cwd: Path
    ports: dict[str, str]
    daemons: dict[str, subprocess.Popen[bytes]]

    def line(self, text: str) -> str:
        # Loopback ports in the docs are examples; other tests may hold 7001 right now.
        text = re.sub(
            r"127\.0\.0\.1:(\d{4,5})",
            lambda m: "127.0.0.1:" + self.ports.setdefault(m.group(1), str(_free_port())),
            text,
        )
        words = _words(text)
        if _is_fednode(text) and _fednode_words(words)[:1] == ["start"]:
            self._start(text, words)
            return ""
        out = subprocess.run(
            ["bash", "-c", text],
            cwd=self.cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        said = out.stdout + out.stderr
        assert out.returncode == 0, f"exit {out.returncode}: {text}\n{said[-3000:]}"
        # Every command says something; a jq filter after it may rightly select nothing.
        assert said.strip() or " | jq " in text, f"no output: {text}"
        return said

    def _start(self, text: str, words: list[str]) -> None:
        # A foreground `fednode start` runs until stopped: the reader opens another
        # terminal; here it runs in the background until its status answers.
        data_dir = _option(words, "-d", "--data-dir")
        log = open(self.cwd / f"start-{len(self.daemons)}.log", "wb")  # noqa: SIM115
        self.daemons[data_dir] = subprocess.Popen(
            ["bash", "-c", f"exec {text.rstrip(' &')}"],
            cwd=self.cwd,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            assert self.daemons[data_dir].poll() is None, (self.cwd / log.name).read_text()
            status = subprocess.run(
                ["fednode", "status", "-d", data_dir, "--format", "json"],
                cwd=self.cwd,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if status.returncode == 0 and json.loads(status.stdout).get("state") != "starting":
                return
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(0.5)

    def close(self) -> None:
        for data_dir, proc in self.daemons.items():
            if proc.poll() is None:
                subprocess.run(
                    ["fednode", "stop", "-d", data_dir],
                    cwd=self.cwd,
                    env=_env(),
                    capture_output=True,
                    timeout=60,
                )
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def _option(words: list[str], *names: str) -> str:
    for i, w in enumerate(words):
        if w in names:
            return words[i + 1]
    raise AssertionError(f"no {names} in {words}")


def _run_block(block: Block, runner: Runner) -> None:
    makes_genesis = any(_fednode_words(_words(c.text))[:2] == ["genesis", "new"] for c in block)
    uses_genesis = any(" net.toml" in c.text for c in block)
    if uses_genesis and not makes_genesis and not (runner.cwd / "net.toml").exists():
        runner.line(GIVEN_GENESIS)
    assignments: list[str] = []  # NAME=value lines hold for the rest of the block
    for cmd in block:
        if (cmd.doc, cmd.text) in PARSE_ONLY:
            continue
        text = cmd.text
        if re.match(r"^[A-Z][A-Z_]*=\S+$", text):
            assignments.append(text)
            continue
        if (cmd.doc, text) in SMALLER:
            text = f"{text} {SMALLER[cmd.doc, text]}"
        try:
            runner.line("\n".join([*assignments, text]))
        except AssertionError as exc:
            raise AssertionError(f"{cmd}\n{exc}") from None


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"{b[0].doc}:{b[0].line}")
def test_doc_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    runner = Runner(_workspace(tmp_path), {}, {})
    try:
        _run_block(block, runner)
    finally:
        runner.close()


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """./n1: the first node of a two-node digits network that has trained its one round."""
    runner = Runner(_workspace(tmp_path_factory.mktemp("n1")), {}, {})
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
        return all(_fednode_words(_words(c.text))[:1] == ["stop"] for c in block)

    assert SHARED_BLOCKS
    for block in sorted(SHARED_BLOCKS, key=stops):
        _run_block(block, running_node)
    assert running_node.daemons["./n1"].wait(30) == 0
