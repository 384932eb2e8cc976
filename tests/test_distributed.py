"""A torchrun index (2 CPU processes, gloo) is the same index as a single process's.

Each process shards the collection round-robin, keeps its own streaming top-k and
pooled features, and rank 0 merges them (ties broken by image order, as one pass does).
Runs ``python main.py index`` and ``embed`` as real subprocesses, with and without torchrun.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from test_indexing import write_images, write_unreadable

from vizapp.collection.index_store import Index

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.0", "features.5"]  # the stem (analytic boxes) and a residual block (gradient boxes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], torchrun: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", VIZAPP_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                     "--master-port", str(_free_port())]
    proc = subprocess.run([*launcher, str(ROOT / "main.py"), *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{'torchrun' if torchrun else 'main.py'} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    photos = tmp / "photos"
    write_images(photos, 15, seed=21, sizes=(50, 200))
    write_unreadable(photos / "cats", photos / "dogs")  # first and last: one on each rank
    torch.manual_seed(0)
    weights = tmp / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).eval().state_dict(), weights)
    return tmp, photos, weights


def test_torchrun_index_equals_single_process(setup):
    tmp, photos, weights = setup
    common = ["index", "--model", str(weights), "--arch", "mobilenet_v3_small", "--data", str(photos),
              "--topk", "3", "--workers", "0", "--batch-size", "3", "--device", "cpu"]
    for layer in LAYERS:
        common += ["--layer", layer]
    one = _run([*common, "--out", str(tmp / "dir1")], torchrun=False, tmp_path=tmp)
    two = _run([*common, "--out", str(tmp / "dir2")], torchrun=True, tmp_path=tmp)
    assert "indexed 17 images (2 skipped as unreadable)" in one.stdout
    assert two.stdout.count("indexed 17 images (2 skipped as unreadable)") == 1  # rank 0 only

    m1 = json.loads((tmp / "dir1" / "manifest.json").read_text())
    m2 = json.loads((tmp / "dir2" / "manifest.json").read_text())
    assert m1["done"] and m2["done"] and m1["key"] == m2["key"]
    assert m1["skipped"] == m2["skipped"] == [0, 16]
    assert m1["layers"] == m2["layers"]
    assert m1["layers"]["features.0"]["field"] == "analytic" and m1["layers"]["features.5"]["field"] == "gradient"
    one, two = Index.load(tmp / "dir1"), Index.load(tmp / "dir2")
    i1 = json.loads(one.file("items").read_text())
    assert i1 == json.loads(two.file("items").read_text())
    for layer in LAYERS:
        with np.load(one.file("topk", layer)) as a, np.load(two.file("topk", layer)) as b:
            assert set(a.files) == set(b.files) == {"values", "images", "positions", "boxes", "ties", "low"}
            np.testing.assert_allclose(a["values"], b["values"], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(a["low"], b["low"], rtol=1e-5, atol=1e-5)
            for key in ("images", "positions", "boxes", "ties"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{layer} {key}")
            assert not np.isin(a["images"], [0, 16]).any()
            # Both ranks' images are among the winners: the merge really combined the shards.
            assert {int(i) % 2 for i in np.unique(a["images"])} == {0, 1}
    f1 = np.load(one.file("features"))
    f2 = np.load(two.file("features"))
    assert f1.shape == f2.shape == (17, 1024)
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-5)
    assert (f2[[0, 16]] == 0).all() and (np.abs(f2[1:16]).sum(axis=1) > 0).all()
    assert not list((tmp / "dir2").glob("*.partial.npz"))


def test_torchrun_embed_equals_single_process(setup):
    pytest.importorskip("vizapp.collection.projection")
    tmp, photos, weights = setup
    common = ["embed", "--model", str(weights), "--arch", "mobilenet_v3_small", "--data", str(photos),
              "--method", "pca", "--workers", "0", "--batch-size", "4", "--device", "cpu"]
    _run([*common, "--cache", str(tmp / "e1"), "--out", str(tmp / "one.npz")], torchrun=False, tmp_path=tmp)
    _run([*common, "--cache", str(tmp / "e2"), "--out", str(tmp / "two.npz")], torchrun=True, tmp_path=tmp)
    with np.load(tmp / "one.npz") as a, np.load(tmp / "two.npz") as b:
        assert a["features"].shape == (15, 1024)  # the two unreadable files are left out
        np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.abs(a["coords"]), np.abs(b["coords"]), rtol=1e-3, atol=1e-4)
        assert a["paths"].tolist() == b["paths"].tolist() and a["labels"].tolist() == b["labels"].tolist()
        assert len(a["paths"]) == len(a["labels"]) == 15
