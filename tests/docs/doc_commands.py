"""Every command of README.md and docs/*.md, its category, and how to run or parse it.

Shared by tests/docs/test_doc_commands.py (categories, parsing, commands beside a running
node) and tests/docs/test_doc_blocks.py (one-host blocks run in fresh directories), two files
so that CI's two workers share the cost.

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
from dataclasses import dataclass
from pathlib import Path

import click
import typer

from node.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A line that starts like one of these is a command a reader would type.
COMMAND_START = re.compile(
    r"^(\$ |fednode |\.venv/bin/|python -m |bash |PYTHONPATH=|OMP_NUM_THREADS=|docker|podman |"
    r"apt-get |eval |\.ci/|source |export [A-Z_]+=|curl |echo |[A-Z][A-Z_]*=\S)"
)
SHELL_LANGS = {"sh", "bash", "console", "shell"}
INLINE = re.compile(
    r"`((?:[A-Z][A-Z_]*=\S+ )*(?:fednode|\.venv/bin/python|bash scripts/|python -m node|pytest )"
    r"[^`]*)`"
)
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
            span = " ".join(m.group(1).split())  # a span may wrap across lines
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


def shell_words(text: str, variables: dict[str, str] | None = None) -> list[str]:
    """The words of a simple command, without leading ``VAR=value`` assignments."""
    words = shlex.split(_expand(text, variables or {}))
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def command_kind(words: list[str]) -> str:
    if not words:
        return "empty"
    if words[0] == "fednode" or words[:3] == [".venv/bin/python", "-m", "node"]:
        return "fednode"
    if words[0] == ".venv/bin/python" and len(words) > 1 and words[1].startswith("bench/"):
        return "bench"
    if words[0] == "bash" and len(words) > 1 and words[1] == "scripts/demo.sh":
        return "demo"
    if words[:3] == [".venv/bin/python", "-m", "pytest"] or words[:1] == ["pytest"]:
        return "pytest"
    if words[:3] == ["python", "-m", "node.testnet.netns"]:
        return "module"
    if words[0] in ("docker-compose", "docker") or words[:2] == ["podman", "exec"]:
        return "container"
    return "other"


def fednode_args(words: list[str]) -> list[str]:
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


ALL = doc_commands()


def shell_simple(text: str) -> bool:
    try:
        shlex.split(text)
    except ValueError:
        return False
    return True


FEDNODE = [
    c
    for c in ALL
    if c.text not in NOT_RUN
    and shell_simple(c.text)
    and command_kind(shell_words(c.text.split("|")[0])) == "fednode"
]


BENCH = [c for c in ALL if shell_simple(c.text) and command_kind(shell_words(c.text)) == "bench"]
DEMO = [c for c in ALL if shell_simple(c.text) and command_kind(shell_words(c.text)) == "demo"]

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


PYTEST = [c for c in ALL if shell_simple(c.text) and command_kind(shell_words(c.text)) == "pytest"]
MODULES = [c for c in ALL if shell_simple(c.text) and command_kind(shell_words(c.text)) == "module"]


CONTAINER = [
    c for c in ALL if shell_simple(c.text) and command_kind(shell_words(c.text)) == "container"
]


def check_compose(words: list[str]) -> None:
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
        parse_fednode(fednode_args(rest[rest.index("fednode") :]))
    else:
        assert set(names) <= set(services), f"unknown services {set(names) - set(services)}"


# --------------------------------------------------------------------------- running

#: Fenced blocks that are parsed (above) but not run, keyed by (doc, first command), and why.
PARSE_ONLY_BLOCKS: dict[tuple[str, str], str] = {
    (
        "docs/user-models.md",
        "PYTHONPATH=examples/flower_clientapp fednode testnet up --task "
        "digits --learner flower --flower-client digits_app:app --flower-initial digits_app:Net",
    ): (
        "run with these options by tests/node/test_user_models_network.py::"
        "test_flower_clientapp_testnet_and_a_broken_client_keeps_serving"
    ),
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
        "[--learner sgd|spsa] [--lora-rank 8 --lora-alpha 16 --lora-targets query,value] "
        "[--pooling model|mean]",
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
    ("docs/training.md", "fednode simulate net.toml --out sim"): "--nodes 3 --rounds 2",
}

#: What some lines must print (a regular expression), beyond exit 0 and some output.
EXPECT: dict[tuple[str, str], str] = {
    ("docs/operations.md", "fednode export model.safetensors -d ./n1"): (
        r"wrote model\.safetensors: round \d+, model hash [0-9a-f]{8}"
    ),
    ("docs/operations.md", "fednode health -d ./n1"): r"127\.0\.0\.1:\d+: SERVING",
    ("docs/operations.md", "fednode status -d ./n1"): r"network_id .* [0-9a-f]{64}",
    ("docs/operations.md", "fednode peers -d ./n1"): r"1 peers.*\balive\b",
    ("docs/operations.md", "fednode init -d ./n1 -f json"): r'"node_id": "[0-9a-f]{64}"',
    (
        "docs/operations.md",
        'echo "$(jq -r .dashboard $DD/daemon.json)?token=$(cat $DD/admin.token)"',
    ): r"^http://127\.0\.0\.1:\d+/\?token=\S{20,}$",
    (
        "docs/operations.md",
        'curl -s -H "Authorization: Bearer $(cat ./n1/admin.token)" '
        "\"$(jq -r .dashboard ./n1/daemon.json)api/state\" | jq '.evaluations[-1]'",
    ): r'"accuracy": 0\.\d+',
    ("docs/operations.md", "fednode testnet up --nodes 3 --task digits --rounds 10"): (
        r"starting 2 nodes.*task digits"
    ),
    ("docs/training.md", "fednode simulate net.toml --out sim"): r"simulating 3 nodes",
    ("docs/deploy.md", "fednode genesis show net.toml"): r"network id\s.*[0-9a-f]{64}",
    ("docs/deploy.md", "fednode certs show ./host-b/node.crt"): r"host-b",
}

#: A block that uses this file without making it runs after the line that makes it (the
#: operator guide's first line; the reader has it from the step before).
GIVEN_GENESIS = "fednode genesis new net.toml --name lab --task digits"

Block = list[DocCommand]


def fenced_blocks() -> list[Block]:
    blocks: dict[tuple[str, int], Block] = {}
    for c in ALL:
        if c.block is not None:
            blocks.setdefault((c.doc, c.block), []).append(c)
    return list(blocks.values())


def first_command(text: str) -> list[str]:
    """The first simple command of a line (before a pipe, ``&&`` or a trailing ``&``)."""
    return shell_words(text.split(" | ")[0].split(" && ")[0].rstrip(" &"))


def is_fednode(text: str) -> bool:
    return shell_simple(text) and command_kind(first_command(text)) == "fednode"


def _makes_a_node(block: Block) -> bool:
    return any(
        fednode_args(first_command(c.text))[:1] in (["init"], ["start"])
        for c in block
        if is_fednode(c.text)
    )


def _asks_a_running_node(block: Block) -> bool:
    """A block that queries ./n1 without making it: run beside the shared running node."""
    return not _makes_a_node(block) and any(
        re.search(r"(-d|--data-dir) \./n1\b|=\./n1$|\./n1/", c.text) for c in block
    )


RUN_BLOCKS: list[Block] = []
SHARED_BLOCKS: list[Block] = []
_seen: set[tuple[str, ...]] = set()
for _block in fenced_blocks():
    if (_block[0].doc, _block[0].text) in PARSE_ONLY_BLOCKS:
        continue
    if not any(is_fednode(c.text) for c in _block) and not _asks_a_running_node(_block):
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


def workspace(path: Path) -> Path:
    """A directory that looks like the checkout to relative paths in the docs."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("examples", "bench", "deploy", ".venv"):
        if (ROOT / name).exists() and not (path / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


def run_env() -> dict[str, str]:
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
        words = first_command(text)
        if is_fednode(text) and fednode_args(words)[:1] == ["start"]:
            self._start(text, words)
            return ""
        out = subprocess.run(
            ["bash", "-c", text],
            cwd=self.cwd,
            env=run_env(),
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
        log_path = self.cwd / f"start-{len(self.daemons)}.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            self.daemons[data_dir] = subprocess.Popen(
                ["bash", "-c", f"exec {text.rstrip(' &')}"],
                cwd=self.cwd,
                env=run_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180  # a daemon took 29 s to start at load average 7
        while True:
            assert self.daemons[data_dir].poll() is None, log_path.read_text()
            status = subprocess.run(
                ["fednode", "status", "-d", data_dir, "--format", "json"],
                cwd=self.cwd,
                env=run_env(),
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
                    env=run_env(),
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


def run_block(block: Block, runner: Runner) -> None:
    makes_genesis = any(
        fednode_args(first_command(c.text))[:2] == ["genesis", "new"] for c in block
    )
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
            said = runner.line("\n".join([*assignments, text]))
            if (cmd.doc, cmd.text) in EXPECT:
                pattern = EXPECT[cmd.doc, cmd.text]
                assert re.search(pattern, said, re.S | re.M), f"no {pattern!r} in:\n{said}"
        except AssertionError as exc:
            raise AssertionError(f"{cmd}\n{exc}") from None
