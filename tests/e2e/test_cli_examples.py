"""Every command line the README (and docs/) shows for `market-ab`, as written.

Each one is parsed by the real parser, so an option the parser refuses (or one placed where it refuses it) fails here.
The fenced ones are also run, with only what they write sent elsewhere: `train` gets a copy of the model repository
with `--models-dir` after the subcommand, `readme` a copy of the README, `serve` free ports (and the `infer` examples
go to it). Some are parsed only, and `plan` says why: `train` of all six variants (about a minute more of training;
`train lightweight` runs the same code with one name) and `demo` (minutes; `test_cli.py::test_demo_end_to_end` runs
it with smaller `--scenarios` and `--workers`). Mentions in prose that carry an option are parsed too.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from seldon_market_ab.cli.commands import build_parser
from seldon_market_ab.local_seldon.serve_process import ServeProcess

from ..conftest import MODELS, REPO, copy_repository

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
SHELL = ("", "bash", "sh", "shell", "console")  # fences whose lines are command lines (not text, Python, YAML)
INLINE = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"<([^<>]+)>")  # `--feedback <request id>=1`: a value only a previous answer can give
MENTIONS = re.compile(r"market-ab|market_ab\.cli")
# The installed console script (what `.venv/bin/market-ab` is when the tests run from .venv), else the module.
_SCRIPT = Path(sys.executable).with_name("market-ab")
PROGRAM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "seldon_market_ab.cli"]


@dataclass(frozen=True)
class Example:
    where: str  # README.md:106
    command: str  # the command line as written, without its program and comment
    fenced: bool  # in a code block (a command to type), not a mention in prose

    def argv(self, values: dict[str, str] | None = None) -> list[str]:
        """The arguments; placeholders get ``values``, or, with none given, a word that parses like them."""
        def fill(match):
            if values is None:
                return match[1].replace(" ", "-")
            if match[1] not in values:
                pytest.fail(f"{self.where}: nothing to put in <{match[1]}> of `{self.command}`")
            return values[match[1]]

        return shlex.split(PLACEHOLDER.sub(fill, self.command))


def _program_length(tokens: list[str]) -> int:
    """How many tokens name `market-ab` at the start of a command line (0: it runs something else)."""
    if tokens and Path(tokens[0]).name == "market-ab":
        return 1
    if tokens and Path(tokens[0]).name.startswith("python") and tokens[1:3] == ["-m", "seldon_market_ab.cli"]:
        return 3
    return 0


def _command(line: str) -> str | None:
    """The arguments of a `market-ab` command line, as written (env assignments and the comment dropped)."""
    if not MENTIONS.search(line):  # shlex only what may be ours: other lines in a block can be heredoc Python
        return None
    tokens = shlex.split(line, comments=True)
    while tokens and re.fullmatch(r"[A-Za-z_]\w*=\S*", tokens[0]):
        tokens.pop(0)
    length = _program_length(tokens)
    if not length:
        return None
    written = re.sub(r"(^|\s)#.*", "", line)  # a comment starts a word, as in the shell
    return written.split(tokens[length - 1], 1)[1].strip()  # as written: keeps a <placeholder> whole


def _lines(block: str, first: int):
    """(number, line) of a code block, with backslash continuations joined."""
    pending, start = "", first
    for number, line in enumerate(block.splitlines(), first):
        start = start if pending else number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def examples_in(text: str, name: str) -> list[Example]:
    """Command lines of code blocks, and mentions in prose that carry an option (`market-ab evaluate --markdown`;
    a bare `market-ab infer` names the command, it is not a command line)."""
    found, prose = [], text
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(2)) + 1
        for number, line in _lines(block[2], first) if block[1].strip() in SHELL else ():
            command = _command(line)
            if command is not None:
                found.append(Example(f"{name}:{number}", command, fenced=True))
        prose = prose.replace(block[0], "\n" * block[0].count("\n"), 1)  # keeps line numbers
    for span in INLINE.finditer(prose):
        command = _command(span[1])
        if command is not None and any(word.startswith("-") for word in command.split()):
            found.append(Example(f"{name}:{prose.count(chr(10), 0, span.start()) + 1}", command, fenced=False))
    return sorted(found, key=lambda e: int(e.where.rsplit(":", 1)[1]))


def parse(argv: list[str]):
    """(namespace, None), or (None, argparse's complaint) where argparse would exit."""
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            return build_parser().parse_args(argv), None
    except SystemExit:
        return None, complaint.getvalue().strip()


def plan(example: Example) -> str:
    """How this module runs a code-block example: "run" (here and now), "served" (against the README's own `serve`
    example), or "parsed only: <why>"."""
    args, _ = parse(example.argv())
    if args is None:
        return "refused"
    if args.command == "demo":
        return "parsed only: minutes of Locust traffic; test_cli.py::test_demo_end_to_end runs it smaller"
    if args.command == "train" and not args.if_missing and len(args.models) != 1:
        return "parsed only: trains several variants; `train <one variant>` runs the same code (cmd_train)"
    if args.command in ("serve", "infer"):
        return "served"
    if args.command in ("train", "readme"):
        return "run"
    if args.command == "rollout":
        return "run" if args.rollout_command == "status" else \
            "parsed only: moves a running stack's weights for minutes; tests/integration/test_rollouts.py runs it"
    if args.command == "retrain":
        return "parsed only: trains and registers a version; tests/integration/test_retraining.py runs it"
    return f"no plan for `{args.command}`: tell this module how to run it"


EXAMPLES = [e for doc in DOCUMENTS for e in examples_in(doc.read_text(), str(doc.relative_to(REPO)))]
FENCED = [e for e in EXAMPLES if e.fenced]


def _trains(example: Example) -> bool:
    args, _ = parse(example.argv())
    return args is not None and args.command == "train" and not args.if_missing


def test_the_readme_shows_command_lines():
    """The extraction found them (an extraction that finds nothing would make every other test pass)."""
    commands = {args.command for args, _ in map(parse, (e.argv() for e in FENCED)) if args}
    assert {"train", "readme", "serve", "infer", "demo"} <= commands


def test_a_refused_option_is_caught():
    text = "```bash\n.venv/bin/market-ab serve --port 9000   # a flag serve does not have\n```\n"
    (example,) = examples_in(text, "made-up.md")
    assert example.command == "serve --port 9000"
    args, complaint = parse(example.argv())
    assert args is None and "unrecognized arguments: --port" in complaint


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.where)
def test_the_parser_accepts_the_example(example):
    args, complaint = parse(example.argv())
    assert args is not None, f"{example.where}: `market-ab {example.command}` is refused: {complaint}"
    if example.fenced:  # and this module knows how to run it, or why it does not
        assert plan(example) in ("run", "served") or plan(example).startswith("parsed only: "), plan(example)


def _fingerprint() -> dict[str, int]:
    """Modification times of what an example must not write to: the shipped models and the README."""
    files = [REPO / "README.md", *(p for p in MODELS.rglob("*") if p.is_file())]
    return {str(p): p.stat().st_mtime_ns for p in files}


def _elsewhere(args, tmp_path: Path) -> list[str]:
    """Arguments, added after the example's own, that send what it writes into ``tmp_path``."""
    if args.command == "train":
        return ["--models-dir", str(copy_repository(tmp_path / "models"))]
    if args.command == "readme":
        return ["--readme", str(shutil.copy(REPO / "README.md", tmp_path / "README.md"))]
    return []


@pytest.mark.parametrize("example", [pytest.param(e, marks=[pytest.mark.slow] if _trains(e) else [])
                                     for e in FENCED if plan(e) == "run"], ids=lambda e: e.where)
def test_the_example_runs(example, tmp_path):
    args, _ = parse(example.argv())
    extra = _elsewhere(args, tmp_path)
    before = _fingerprint()
    trained = args.models if _trains(example) else []
    written = {name: (tmp_path / "models" / name / "model.pt").stat().st_mtime_ns for name in trained}
    done = subprocess.run([*PROGRAM, *example.argv(), *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example.where}: `market-ab {example.command}`:\n{done.stderr[-3000:]}"
    assert _fingerprint() == before, "the example wrote to the repository"
    for name, mtime in written.items():  # it trained into the copy
        assert (tmp_path / "models" / name / "model.pt").stat().st_mtime_ns > mtime
    if args.command == "train" and args.if_missing:
        assert "nothing to train" in done.stdout  # the copy is complete
    if args.command == "readme":
        assert str(tmp_path / "README.md") in done.stdout


class ServeExample(ServeProcess):
    """The README's `market-ab serve` line as written (its Prometheus too), plus the repository (after the
    subcommand) and free ports; ServeProcess reads its output until the ready line and stops it with SIGTERM."""

    def __init__(self, example: Example):
        super().__init__(MODELS, [], seed=None, prometheus=True)
        self.example = example

    def command(self) -> list[str]:
        return [*PROGRAM, *self.example.argv(), "--models-dir", str(self.models_dir),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--prometheus-port", str(self.prometheus_port)]


def _request_ids(args, stdout: str) -> list[str]:
    if args.json:
        return [json.loads(line)["request_id"] for line in stdout.splitlines()]
    return re.findall(r"\bid=(\S+)", stdout)


def _run_infer(example: Example, serve: ServeProcess, values: dict[str, str]) -> list[str]:
    """Run an `infer` example against ``serve`` (its address options appended: the last one wins) and check its
    answers; return their request ids."""
    argv = example.argv(values)
    args, _ = parse(argv)
    addresses = ["--grpc", serve.grpc_address] + (["--rest", serve.http_url] if args.rest else [])
    done = subprocess.run([*PROGRAM, *argv, *addresses], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example.where}: `market-ab {example.command}`:\n{done.stderr[-3000:]}"
    answers = done.stdout.splitlines()
    if args.outcome:  # any id may be reported once; the example's ids are its own
        assert [line.split("status=")[1] for line in answers] == ["recorded"] * len(args.outcome), done.stdout
        return []
    if args.feedback:  # the id came from a decision the router made, so the reward must reach it
        statuses = [s for line in answers for s in (json.loads(line)["outputs"]["status"] if args.json else
                                                    re.findall(r"status=(\S+)", line))]
        assert statuses == ["applied"] * len(args.feedback), done.stdout
    else:
        assert len(answers) == args.windows, done.stdout
    return _request_ids(args, done.stdout)


@pytest.mark.slow
def test_the_serve_and_infer_examples_run(monkeypatch):
    """`serve` comes up (its ready line), every `infer` example is answered through it in README order (a
    `<request id>` is the first id an earlier example got back), and SIGTERM stops it with exit 0."""
    served = [e for e in FENCED if plan(e) == "served"]
    (serve_example,) = [e for e in served if parse(e.argv())[0].command == "serve"]
    monkeypatch.chdir(REPO)  # the README's relative defaults (manifests/overlays/dev)
    before = _fingerprint()
    serve = ServeExample(serve_example).start()
    try:
        ids: list[str] = []
        for example in served:
            if example is not serve_example:
                ids += _run_infer(example, serve, {"request id": ids[0]} if ids else {})
    finally:
        code = serve.stop()
    assert code == 0, serve.output()
    assert _fingerprint() == before, "serving wrote to the repository"
