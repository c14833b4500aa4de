"""The Makefile's build graph: an edited input rebuilds what depends on it, and nothing else.

Runs the real Makefile with `make -n` / `make -q` (print the plan, run nothing) in a copy of the project's
sources under tmp_path, whose build outputs are empty stand-ins with chosen modification times, beside the
dependency files the archive tool wrote for the checkout's archives (`model_store/<name>.mar.d`: what each
archive was made of). Nothing is trained, archived or started, and the checkout's build/ and model_store/ are
never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.paths import ROOT, STORE, require_built
from toolkit.archive.depfile import depfile_text

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

SOURCES = ("Makefile", "pyproject.toml", "config", "handlers", "toolkit", "examples", "proto", "scripts",
           "tests/e2e/kserve-client-requirements.txt")
DEMO = {
    "mnist": ("mnist.pt", "mnist.onnx", "index_to_name.json", "heldout.npz"),
    "tabular": ("tabular.pt", "tabular.onnx", "index_to_name.json", "heldout.npz"),
    "resnet18": ("resnet18.pt", "resnet18.onnx"),
    "fortunes": ("fortunes.pt", "tokenizer.json", "index_to_name.json", "heldout.json"),
    "digit_detector": ("digit_detector.pt", "digit_detector.onnx", "index_to_name.json"),
    "digit_segmenter": ("digit_segmenter.pt", "digit_segmenter.onnx", "index_to_name.json"),
}
ARCHIVES = tuple(sorted(p.stem for p in (ROOT / "config" / "models").glob("*.yaml")))  # mnist, mnist_torchscript, ...
T0 = 1_700_000_000  # sources; each build step's outputs are one step newer than its inputs
STEP = 100
OUTPUTS = {  # output -> age rank (higher is newer)
    ".venv/.installed": 1,
    ".venv-kserve/.installed": 1,
    "toolkit/client/grpc_gen/__init__.py": 2,
    **{f"build/models/{m}/{f}": 3 for m, files in DEMO.items() for f in files},
    **{f"build/models/{m}/.built": 3 for m in DEMO},  # written last by the make rule, after build_models
    **{f"model_store/{a}.mar": 4 for a in ARCHIVES},
}


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the sources with every build output present and up to date."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "grpc_gen", "results")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=ignore)
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp_path / name)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            set_mtime(path, T0)
    for rel, rank in OUTPUTS.items():
        out = tmp_path / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
        set_mtime(out, T0 + rank * STEP)
    for name in ARCHIVES:
        depfile = require_built(STORE / f"{name}.mar.d", "make archive")
        shutil.copy2(depfile, tmp_path / "model_store" / depfile.name)
    return tmp_path


def touch(tree: Path, rel: str) -> None:
    """Make `rel` the newest file of the tree, as an editor saving it would."""
    set_mtime(tree / rel, T0 + 10 * STEP)


def make(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(tree), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plan(tree: Path, *targets: str) -> list[str]:
    """The commands `make -n` would run."""
    result = make(tree, "-n", *targets)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def archived(commands: list[str]) -> set[str]:
    return {m[1] for line in commands if (m := re.search(r"-m toolkit\.archive --model (\S+)", line))}


def trained(commands: list[str]) -> set[str]:
    return {m[1] for line in commands if (m := re.search(r"build_models --only (\S+)", line))}


def test_the_copy_starts_up_to_date(tree):
    targets = [f"model_store/{a}.mar" for a in ARCHIVES]
    assert make(tree, "-q", *targets).returncode == 0, plan(tree, *targets)
    assert plan(tree, "serve") == ["bash scripts/serve.sh"]


def test_yaml_edit_rebuilds_that_archive_only(tree):
    touch(tree, "config/models/mnist.yaml")
    for target in ("serve", "archive", "test"):
        commands = plan(tree, target)
        assert archived(commands) == {"mnist"}, (target, commands)
        assert trained(commands) == set(), (target, commands)
        assert not any("install.sh" in line for line in commands), (target, commands)
    assert make(tree, "-q", "model_store/mnist.mar").returncode == 1
    assert make(tree, "-q", "model_store/mnist_torchscript.mar").returncode == 0


def test_handler_edit_rebuilds_every_archive_and_no_model(tree):
    touch(tree, "handlers/image.py")
    commands = plan(tree, "serve")
    assert archived(commands) == set(ARCHIVES)
    assert trained(commands) == set()


def test_rebuilt_model_rebuilds_the_archives_that_pack_it(tree):
    touch(tree, "build/models/mnist/.built")  # build_models --only mnist ran (both mnist YAMLs use it)
    assert archived(plan(tree, "serve")) == {"mnist", "mnist_torchscript"}


def test_depfiles_name_what_each_archive_was_made_of(tree):
    depfile = (tree / "model_store/mnist.mar.d").read_text()
    for rel in ("config/models/mnist.yaml", "build/models/mnist/.built", "handlers/image.py",
                "toolkit/archive/staging.py"):
        assert f"  {rel} " in depfile or depfile.rstrip().endswith(rel), rel
    assert "build/models/tabular" not in depfile


@pytest.fixture
def own_model(tree: Path) -> Path:
    """A model of your own in the tree (config/models/custom.yaml, mine/custom.pt and its labels beside it),
    archived: custom.mar and the dependency file the archive tool writes for it (its inputs as staging records
    them, tests/integration/test_preflight.py checks that list on a real build)."""
    text = (tree / "config/models/tabular.yaml").read_text()
    (tree / "config/models/custom.yaml").write_text(text.replace("build/models/tabular/tabular.pt", "mine/custom.pt"))
    inputs = [ROOT / rel for rel in ("config/models/custom.yaml", "mine/custom.pt", "mine/index_to_name.json")]
    text = depfile_text(ROOT / "model_store/custom.mar", inputs, modules=[ROOT / "handlers/base.py"])
    (tree / "model_store/custom.mar.d").write_text(text)
    (tree / "mine").mkdir()
    for rel, rank in (("config/models/custom.yaml", 0), ("mine/custom.pt", 0), ("mine/index_to_name.json", 0),
                      ("model_store/custom.mar", 4)):
        (tree / rel).touch()
        set_mtime(tree / rel, T0 + rank * STEP)
    return tree


def test_model_of_your_own_is_tracked_by_its_file(own_model):
    assert archived(plan(own_model, "serve")) == set()
    touch(own_model, "mine/custom.pt")
    commands = plan(own_model, "serve")
    assert archived(commands) == {"custom"} and trained(commands) == set()


def test_a_touched_labels_file_rearchives_its_model_and_nothing_else(own_model):
    touch(own_model, "mine/index_to_name.json")
    commands = plan(own_model, "serve")
    assert archived(commands) == {"custom"} and trained(commands) == set()


def test_training_code_edit_retrains_and_rearchives(tree):
    touch(tree, "examples/demo_models/build_models.py")
    commands = plan(tree, "serve")
    assert trained(commands) == set(DEMO)
    assert archived(commands) == set(ARCHIVES)
    assert sum("build_models" in line for line in commands) == len(DEMO)  # one run per model, not one per file


def test_one_models_training_code_retrains_that_model_only(tree):
    touch(tree, "examples/demo_models/tabular.py")
    commands = plan(tree, "serve")
    assert trained(commands) == {"tabular"}
    assert archived(commands) == {"tabular", "tabular_onnx"}
    touch(tree, "examples/demo_models/digits.py")  # the digit generator: the classifier and the scene models
    assert trained(plan(tree, "serve")) == {"mnist", "tabular", "digit_detector", "digit_segmenter"}
    touch(tree, "examples/demo_models/fortunes.py")
    assert trained(plan(tree, "serve")) == {"mnist", "tabular", "digit_detector", "digit_segmenter", "fortunes"}


def test_scene_code_retrains_the_scene_models_only(tree):
    touch(tree, "examples/demo_models/scenes.py")
    assert trained(plan(tree, "serve")) == {"digit_detector", "digit_segmenter"}


def test_missing_model_folder_is_rebuilt(tree):
    shutil.rmtree(tree / "build/models/tabular")
    commands = plan(tree, "serve")
    assert trained(commands) == {"tabular"}
    assert archived(commands) == {"tabular", "tabular_onnx"}


def test_pyproject_edit_reinstalls_without_retraining(tree):
    touch(tree, "pyproject.toml")
    commands = plan(tree, "serve")
    assert any("scripts/install.sh" in line for line in commands)
    assert trained(commands) == set() and archived(commands) == set()


def test_proto_edit_regenerates_the_stubs(tree):
    touch(tree, next(p.relative_to(tree).as_posix() for p in (tree / "proto").glob("*.proto")))
    assert any("gen_grpc.py" in line for line in plan(tree, "test-unit"))
    assert not any("gen_grpc.py" in line for line in plan(tree, "serve"))


def test_archive_with_model_and_version_calls_the_tool(tree):
    commands = plan(tree, "archive", "MODEL=mnist", "VERSION=2.0")
    assert commands[-1].endswith("-m toolkit.archive --model mnist --version 2.0")
    assert archived(commands[:-1]) == set()
    assert archived(plan(tree, "archive", "MODEL=tabular")) == set()
    touch(tree, "config/models/tabular.yaml")
    assert archived(plan(tree, "archive", "MODEL=mnist")) == set()
    assert archived(plan(tree, "archive", "MODEL=tabular")) == {"tabular"}


def test_unit_and_integration_tiers_need_neither_java_nor_wrk(tree):
    for target in ("test-unit", "test-integration"):
        text = "\n".join(plan(tree, target))
        assert "-m pytest tests/" in text
        for word in ("java", "wrk", "test.sh", "prereqs"):
            assert word not in text, (target, word, text)


def test_help_lists_every_phony_target_and_knob(tree):
    result = make(tree, "help")
    assert result.returncode == 0, result.stderr
    phony = re.search(r"^\.PHONY:(.*)$", (tree / "Makefile").read_text(), re.M)[1].split()
    listed = set(re.findall(r"^  make (\S+)", result.stdout, re.M))
    assert set(phony) == listed
    for knob in ("MODEL", "VERSION", "DRAIN_DEADLINE_S", "BENCH_ARGS", "MINUTES", "RATE"):
        assert re.search(rf"\b{knob}=", result.stdout), knob


def test_the_image_pipeline_retrains_the_image_models_only(tree):
    touch(tree, "handlers/imaging.py")  # the serving layout the digit generator and the photo model train on
    assert trained(plan(tree, "serve")) == {"mnist", "resnet18", "digit_detector", "digit_segmenter"}
