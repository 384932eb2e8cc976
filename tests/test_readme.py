"""Every command line in README.md's code blocks runs as written.

Each ``python main.py ...`` line runs in-process (``vizapp.cli.main``), in README order, in
one scratch folder that holds a link to the project's ``resources`` (what a fresh clone
has), so the outputs (``--out f.npz``, ``runs/tinyvgg``, ``idx``) land there and later
lines find them. ``python -c "..."`` lines are executed in-process too.

Not run, and reported as skipped with the reason: lines that download a model (a
torchvision or timm registry entry) or a dataset (mnist, fashion-mnist, cifar10), need a
GPU (``--device cuda``) or ``torchrun``. The window without a command (``python main.py
--model ...``) is parsed and handed to a stand-in handler: no window opens. Overrides,
to stay within a few minutes on two cores: ``train`` lines get ``--epochs 1 --n 160``
appended (the last value of an option wins); nothing else is changed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOWNLOADED_SETS = {"mnist", "fashion-mnist", "cifar10"}
TRAIN_OVERRIDE = ["--epochs", "1", "--n", "160"]


def readme_lines() -> list[str]:
    """Command lines of the README's ``bash`` blocks that run this project."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("python main.py", "python -c", "torchrun")):
                lines.append(line)
    return lines


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words[:-1] else None


def skip_reason(words: list[str]) -> str | None:
    from models import REGISTRY

    if words[0] == "torchrun":
        return "needs torchrun (several processes)"
    if (option(words, "--device") or "").startswith("cuda"):
        return "needs a CUDA GPU"
    model = (option(words, "--model") or "").removeprefix("hub:")
    if model in REGISTRY and REGISTRY[model].source in ("torchvision", "timm"):
        return f"downloads {model}"
    data = option(words, "--data") or option(words, "--dataset")
    if data in DOWNLOADED_SETS:
        return f"downloads {data}"
    return None


LINES = readme_lines()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "resources").symlink_to(ROOT / "resources", target_is_directory=True)
    return folder


def test_the_readme_has_the_examples():
    assert len(LINES) >= 15
    assert not [line for line in LINES if re.search(r"\[--|cat\.jpg|photos/|my_photos", line)]


@pytest.mark.parametrize("line", LINES, ids=[line[:80] for line in LINES])
def test_readme_line_runs(line, scratch, monkeypatch, capsys, request):
    words = shlex.split(line, comments=True)
    reason = skip_reason(words)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("VIZAPP_SETTINGS", str(scratch / "settings.ini"))
    if words[:2] == ["python", "-c"]:
        exec(compile(words[2], "<README>", "exec"), {})  # noqa: S102 - the README's own line
        return

    import main
    from vizapp import cli

    argv = words[2:]
    if argv[0] == "train":
        argv += TRAIN_OVERRIDE
    opened = []
    handlers = {"gui": lambda args: opened.append(args) or 0, "screenshot": main._screenshot,
                "export": main._export, "record": main._record}
    if argv[0] in ("screenshot", "export", "record"):
        request.getfixturevalue("qapp")
    status = cli.main(argv, handlers)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "Traceback" not in err and "internal error" not in err
    if argv[0].startswith("--"):  # the window: its options parsed, the sample found
        (args,) = opened
        assert args.command == "gui" and args.model == option(argv, "--model")
        if "--scene" in argv:  # a scene, deck or folder the lines above wrote
            assert Path(args.scene).exists()
        elif "--video" in argv or "--camera" in argv:  # live: the source is opened by the window
            assert args.video == option(argv, "--video") and (args.camera is not None) == ("--camera" in argv)
        else:
            assert Path(args.image).is_file()
    if "--out" in argv and argv[0] != "train":
        assert (scratch / option(argv, "--out")).exists()


def test_the_install_says_what_pytorch_it_brings():
    """Before the first command: the CUDA build's size and when the CPU-only one fits better."""
    before, _, after = README.partition("```bash")
    assert "CUDA build" in before and "6 GB" in before and "CPU-only" in before and "NVIDIA GPU" in before
    first, second, third = re.findall(r"```bash\n(.*?)```", README, re.S)[:3]
    assert first.strip().endswith("pip install -e . && python main.py")
    assert second.strip().endswith("pip install -e '.[test]' && python -m pytest -q")
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in third
