"""Render the lecture screenshots in ``docs/lecture/``.

Five views (feature maps, top patches, attention, attribution, the training lab after a
Lecture demo run) at 1280x720 and 1024x768, each as on a desk (the whole window at scale 1)
and as projected (presentation mode at 2x, or 1.25x for the views with many panels, the view
maximised as Z does). Every picture
but the training lab's is one ``vizapp screenshot`` command line, printed as it runs, so a
lecturer can copy it; the lab is trained first, then captured.

The window following a video (``docs/live.png``) is one more ``vizapp screenshot --video``
line, on a clip :func:`make_clip` writes first (a moving crop over the "chelsea" cat, then the
"coffee" cup, so the predictions change as it moves).

    python docs/make_screenshots.py            # all twenty, about 10 minutes on 2 cores
    python docs/make_screenshots.py attention  # the views whose names are given
    python docs/make_screenshots.py convolution convolution-sobel  # docs/convolution*.png
    python docs/make_screenshots.py live       # docs/live.png only
    python docs/make_screenshots.py deconv deconv-guided  # docs/deconv*.png: the projections
    python docs/make_screenshots.py featurevis featurevis-class deepdream  # the Feature vis dock
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "lecture"
SIZES = ((1280, 720), (1024, 768))
#: The view, the dock, the model and image it is shown on, and its presentation scale (the
#: attention dock and the lab at 1.25x: their many panels do not fit 720 pixels at 2x).
VIEWS = {
    "features": ("features", ["--layer", "blocks.1.0.conv_dw", "--channel", "5"], 2),
    "patches": ("patches", ["--layer", "blocks.2", "--collection", "samples"], 2),
    "attention": ("attention", ["--model", "vit_digits", "--image", "digit3"], 1.25),
    "attribution": ("attribution", [], 2),
}
LAB_SCALE = 1.25
#: Pictures of ``docs/`` itself, one each at 1280x720: the Convolution dock maximised, mid-step
#: (the first layer's filter 5 of Lite0 on the cat; Sobel x, stride 1, padding 1, on the camera);
#: the Top patches dock maximised with the projections (``docs/deconv*.png``, TinyVGG on generated shapes).
PICTURES = {
    "convolution": ["--model", "efficientnet_lite0", "--image", "chelsea", "--layer", "conv_stem", "--channel", "5",
                    "--view-option", "convolution.step=4509"],
    "convolution-sobel": ["--model", "efficientnet_lite0", "--image", "camera", "--layer", "conv_stem",
                          "--view-option", "convolution.kernel=sobel_x", "--view-option", "convolution.own=false",
                          "--view-option", "convolution.stride=1", "--view-option", "convolution.padding=1",
                          "--view-option", "convolution.step=24762"],
    # The Top patches dock with each top-9 unit's deconvnet (then guided backprop) projection beside the model
    # input under it: TinyVGG (max-pooling: deconvnet switches) over SHAPES generated shapes images, pool2
    # channel 2 (a shape's corner at the upper left of the unit's field). "{shapes}": that folder.
    "deconv": ["--model", "tinyvgg_shapes", "--image", "star", "--layer", "pool2", "--channel", "2",
               "--collection", "{shapes}", "--view-option", "patches.projection=deconvnet"],
    "deconv-guided": ["--model", "tinyvgg_shapes", "--image", "star", "--layer", "pool2", "--channel", "2",
                      "--collection", "{shapes}", "--view-option", "patches.projection=guided"],
}
#: The shapes collection of ``docs/deconv*.png``: ``draw_shapes(n, size, seed)`` (vizapp/training/shapes.py).
SHAPES = (240, 32, 7)
#: The dock each picture maximises (the Convolution dock unless named here).
PICTURE_DOCKS = {"deconv": "patches", "deconv-guided": "patches"}
#: The Feature visualisation pictures of ``docs/``, the dock maximised at 1280x720 after a run (the
#: screenshot waits for it: a 256-step 224 px Lite0 channel run is ~13 s on one idle CPU thread): a
#: Lite0 channel beside its top-9 patches in the indexed samples, a class (1, goldfish: its logit)
#: and DeepDream of the cat (blocks.3, 4 octaves of 10 steps: the cat stays recognisable).
FEATUREVIS = {
    "featurevis": ["--model", "efficientnet_lite0", "--image", "chelsea", "--layer", "blocks.4", "--channel", "5",
                   "--collection", "samples"],
    "featurevis-class": ["--model", "efficientnet_lite0", "--image", "chelsea", "--view-option",
                         "featurevis.objective=class", "--view-option", "featurevis.class=1", "--view-option",
                         "featurevis.class_score=logit"],
    "deepdream": ["--model", "efficientnet_lite0", "--image", "chelsea", "--layer", "blocks.3", "--view-option",
                  "featurevis.preset=DeepDream", "--view-option", "featurevis.steps=10"],
}
#: The live picture: its size, the frames the window follows first, the clip's frame size and rate.
LIVE_SIZE, LIVE_FRAMES, CLIP_SIZE, CLIP_FPS = (1280, 720), 30, (320, 240), 15


def make_clip(path: str | Path, frames_each: int = 90) -> Path:
    """Write a clip like a camera's: a 4:3 crop that pans and zooms over the "chelsea" sample,
    then over "coffee" (``frames_each`` frames each, MJPG .avi at :data:`CLIP_FPS`)."""
    import cv2
    import numpy as np
    from PIL import Image

    from vizapp.inputs.sources import resolve_image_source

    path = Path(path)
    w, h = CLIP_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (w, h))
    try:
        for name in ("chelsea", "coffee"):
            with Image.open(resolve_image_source(name)) as im:
                picture = np.asarray(im.convert("RGB"))
            ph, pw = picture.shape[:2]
            for i in range(frames_each):
                t = i / max(1, frames_each - 1)
                zoom = 1.0 - 0.35 * np.sin(np.pi * t)  # in and out again
                ch = int(min(ph, pw * h / w) * zoom)
                cw = int(ch * w / h)
                x = int((pw - cw) * (0.5 + 0.5 * np.sin(2 * np.pi * t) * 0.8))
                y = int((ph - ch) * (0.5 + 0.3 * np.cos(2 * np.pi * t)))
                crop = picture[y:y + ch, x:x + cw]
                frame = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def shoot_live(env: dict, scratch: str) -> None:
    """``docs/live.png``: the window following the clip, Lite0, the live bar's rate in view."""
    clip = make_clip(Path(scratch) / "chelsea-coffee.avi")
    argv = [sys.executable, "main.py", "screenshot", "--model", "efficientnet_lite0", "--video", str(clip),
            "--frames", str(LIVE_FRAMES), "--size", f"{LIVE_SIZE[0]}x{LIVE_SIZE[1]}",
            "--out", str(ROOT / "docs" / "live.png")]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, cwd=ROOT, env=env, check=True)


def name(view: str, size: tuple[int, int], presenting: bool) -> Path:
    return OUT / f"{view}-{size[0]}x{size[1]}{'-presentation' if presenting else ''}.png"


def shoot(view: str, size: tuple[int, int], presenting: bool, env: dict) -> None:
    dock, extra, scale = VIEWS[view]
    presentation = ["--presentation", "--scale", str(scale), "--maximise"] if presenting else []
    argv = [sys.executable, "main.py", "screenshot", *extra, "--dock", dock, "--size", f"{size[0]}x{size[1]}",
            *presentation, "--out", str(name(view, size, presenting))]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, cwd=ROOT, env=env, check=True)


def write_shapes(folder: Path) -> Path:
    """:data:`SHAPES` generated shapes images as PNG files in ``folder`` (made once)."""
    from PIL import Image

    from vizapp.training.shapes import draw_shapes

    if not folder.is_dir():
        folder.mkdir(parents=True)
        images, _labels = draw_shapes(*SHAPES)
        for i, image in enumerate(images):
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"shape{i:03d}.png")
    return folder


def picture(name: str, env: dict, scratch: str) -> None:
    """One of :data:`PICTURES`: its dock maximised in a 1280x720 window."""
    dock = PICTURE_DOCKS.get(name, "convolution")
    args = PICTURES[name]
    if "{shapes}" in args:
        shapes = str(write_shapes(Path(scratch) / "shapes"))
        args = [shapes if a == "{shapes}" else a for a in args]
    argv = [sys.executable, "main.py", "screenshot", *args, "--dock", dock, "--maximise",
            "--size", "1280x720", "--out", str(ROOT / "docs" / f"{name}.png")]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, cwd=ROOT, env=env, check=True)


def featurevis_picture(name: str, env: dict) -> None:
    """One of :data:`FEATUREVIS`: the Feature vis dock maximised in a 1280x720 window, after its run."""
    argv = [sys.executable, "main.py", "screenshot", *FEATUREVIS[name], "--dock", "featurevis", "--maximise",
            "--view-option", "featurevis.run=true", "--size", "1280x720", "--out", str(ROOT / "docs" / f"{name}.png")]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, cwd=ROOT, env=env, check=True)


def train_and_shoot(size: tuple[int, int], presenting: bool) -> None:
    """The training lab after the shapes Lecture demo (run in this process: ``--lab``)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from widgets.app import make_app, wait_until_ready
    from widgets.main_window import MainWindow

    app = make_app()
    window = MainWindow(restore_layout=False)
    window.resize(*size)
    window.show()
    window.start()  # the offline default model and image, as at launch
    if not wait_until_ready(window):
        raise SystemExit(f"the window did not load: {window.last_error}")
    if presenting:
        window.set_presentation(True, LAB_SCALE, full_screen=False)
        window.resize(*size)
    window.docks["training"].raise_()
    if presenting:
        window.presentation.toggle_maximise("training")
    panel = window.training_panel
    panel.form.dataset.setCurrentIndex(panel.form.dataset.findData("shapes"))
    panel.form.apply_preset("lecture")
    if not panel.start():
        raise SystemExit(f"the training lab did not start: {panel.error_text()}")
    deadline = time.monotonic() + 900
    while panel.running() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    window.resize(*size)
    if presenting:
        panel.settings_button.setChecked(False)  # the settings folded away: the plots get the screen
    window.clear_message()  # "training finished: checkpoint in <a scratch folder>"
    for _ in range(5):
        app.processEvents()
    print(f"{panel.status_text()}")
    saved = window.export_view(None, name("training", size, presenting))
    print(f"saved {saved}")
    window.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--lab"]:
        w, h = map(int, argv[1].split("x"))
        train_and_shoot((w, h), argv[2] == "presentation")
        return 0
    wanted = argv or [*VIEWS, "training", *PICTURES, *FEATUREVIS, "live"]
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Nothing of the user's: a scratch settings file, runs folder and (empty) machine config.
        config = Path(scratch) / "config.toml"
        config.write_text("")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "VIZAPP_SETTINGS": str(Path(scratch) / "s.ini"),
               "VIZAPP_RUNS": str(Path(scratch) / "runs"), "VIZAPP_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        for view in wanted:
            if view in PICTURES:
                picture(view, env, scratch)
                continue
            if view in FEATUREVIS:
                featurevis_picture(view, env)
                continue
            if view == "live":
                shoot_live(env, scratch)
                continue
            for size in SIZES:
                for presenting in (False, True):
                    if view == "training":
                        mode = "presentation" if presenting else "desk"
                        print(f"$ (training lab, {size[0]}x{size[1]}, {mode})", flush=True)
                        subprocess.run([sys.executable, __file__, "--lab", f"{size[0]}x{size[1]}", mode],
                                       cwd=ROOT, env=env, check=True)
                    else:
                        shoot(view, size, presenting, env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
