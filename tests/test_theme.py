"""The one theme (widgets/theme.py): no literal sizes in the views, the roles' arithmetic,
and every view re-lays itself when the scale changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WIDGETS = Path(__file__).resolve().parents[1] / "widgets"

#: A literal text size, marker size or line width written in a view.
LITERALS = [
    re.compile(p)
    for p in (
        r"set(Point|Pixel)Size(F)?\(.*\b\d",
        r"font-size:\s*\d",
        r"""["']font-size["']\s*:\s*["']?\d""",
        r"""\b\d+(\.\d+)?\s*(pt|px)["';]""",
        r"QFont\([^)]*,\s*\d",
        r"""\b(size|labelTextSize|symbolSize|width)\s*=\s*["']?\d""",
        r"setWidth(F)?\(\s*\d",
        r"QPen\(.*\),\s*\d",
        r"\b(heading|big_font|_font|font|_pen)\([^()]*,\s*\d",
        r"\b(big_font|_font)\(\s*\d",
    )
]


def literal_sizes(text: str, name: str = "") -> list[str]:
    """``name:line: text`` of every line of ``text`` that writes a literal size."""
    hits = []
    for i, line in enumerate(text.splitlines(), 1):
        code = re.sub(r"(^|\s)#\s.*$", "", line)  # a comment, not a colour
        if any(p.search(code) for p in LITERALS):
            hits.append(f"{name}:{i}: {line.strip()}")
    return hits


def test_no_literal_sizes_in_the_views():
    hits = []
    for path in sorted(WIDGETS.glob("*.py")):
        if path.name == "theme.py":
            continue
        hits += literal_sizes(path.read_text(encoding="utf-8"), path.name)
    assert hits == [], "literal sizes in widgets/ (use widgets.theme):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "line",
    [
        "font.setPointSize(12)",
        'self.banner.setStyleSheet("background: red; font-size: 16pt;")',
        'axis.setLabel(label, **{"font-size": "14pt"})',
        'plot.setTitle(title, size="14pt")',
        "item = pg.ScatterPlotItem(size=12, pen=None)",
        'pen = pg.mkPen("#fff", width=3)',
        "pen.setWidth(3)",
        "painter.setPen(QPen(QColor(0, 220, 255), 3))",
        'self.title = heading("Kernels", 12)',
        "font.setPixelSize(int(max(11, rh)))",
        "TITLE_PT = \"14pt\"",
    ],
)
def test_the_check_sees_each_kind_of_literal(line):
    assert literal_sizes(line) != []


def test_the_check_lets_theme_reads_through():
    ok = [
        'self.title = heading("Kernels", "body")',
        'pen = pg.mkPen("#fff", width=THEME.width("thick"))',
        'plot.setTitle(title, size=THEME.css("subheading"))',
        "font.setPointSize(THEME.pt(\"body\"))",
        "self.setMaximumWidth(160)",
    ]
    assert [line for line in ok if literal_sizes(line)] == []


# --- the roles' arithmetic (Qt-free) ---------------------------------------------------
def test_roles_at_scale_one_are_the_old_point_sizes():
    from widgets.theme import BASE_PT, Theme

    t = Theme()
    assert BASE_PT == 12 and t.scale == 1.0
    expected = {"tiny": 9, "note": 10, "small": 11, "body": 12, "label": 13, "subheading": 14,
                "heading": 15, "title": 16, "huge": 18, "busy": 20}
    assert {role: t.pt(role) for role in expected} == expected
    assert t.css("subheading") == "14pt"
    assert t.marker("point") == 12.0 and t.width("thick") == 3.0 and t.width("cosmetic") == 0.0
    assert t.px(6) == 6.0


def test_scale_multiplies_every_size_and_emits_once_per_change():
    from widgets.theme import Theme, increase

    t = Theme()
    seen = []

    class Listener:
        def on_change(self, scale):
            seen.append(scale)

    listener = Listener()
    t.changed.connect(listener.on_change)
    t.set_scale(2.0)
    t.set_scale(2.0)  # unchanged: no event
    assert seen == [2.0]
    assert t.pt("body") == 24 and t.pt("small") == 22 and t.css("title") == "32pt"
    assert t.marker("mark") == 48.0 and t.width("thin") == 3.0 and t.px(4) == 8.0
    t.set_scale(1.5)
    assert t.pt("small") == round(11 * 1.5) == 16 and t.pt("tiny") == 14
    t.set_scale(1.0)
    assert seen == [2.0, 1.5, 1.0] and t.pt("body") == 12
    with pytest.raises(ValueError):
        t.set_scale(0)
    assert increase(12, 2) == 14 and increase(2, -5) == 1.0
    # A subscriber that is gone is dropped, not called.
    del listener
    t.set_scale(3.0)
    assert seen == [2.0, 1.5, 1.0]


def test_one_error_colour():
    from widgets.theme import COLOURS

    assert COLOURS["error"] == "#c0392b"
    texts = "".join(p.read_text(encoding="utf-8") for p in WIDGETS.glob("*.py") if p.name != "theme.py")
    for red in ("#c0392b", "#e74c3c", "#ff6b6b", "#b3261e", "#c00", "#d32f2f", "#b00020", "'red'", '"red"'):
        assert red not in texts, red


# --- the views follow the scale ----------------------------------------------------------
@pytest.fixture
def window(make_window):
    from widgets.theme import THEME

    yield make_window()
    THEME.set_scale(1.0)


def _sizes(w):
    from vizapp.probing.inference import Prediction

    p = w.predictions_view
    p.set_predictions([Prediction("tiger cat", 282, 0.5), Prediction("tabby", 281, 0.3), Prediction("lynx", 287, 0.2)])
    p.resize(p.width(), 400)  # three rows of the largest height at either scale
    pen = w.patches_view.marker.pen()
    return {
        "bars (px)": p.label_font().pixelSize(),
        "feature maps title": w.feature_view.title.font().pointSize(),
        "feature maps detail": w.feature_view.detail.font().pointSize(),
        "status message": w.message.font().pointSize(),
        "attention message": w.attention_view.message.font().pointSize(),
        "attention busy": w.attention_view.busy.textItem.font().pointSize(),
        "attribution message": w.attribution_view.message.font().pointSize(),
        "training status": w.training_panel.status.font().pointSize(),
        "training buttons": w.training_panel.start_button.font().pointSize(),
        "top patches marker (px)": pen.widthF(),
        "attention head ring": w.attention_view.distance_mark.opts["size"],
    }


def test_views_re_lay_themselves_when_the_scale_changes(window):
    from widgets.theme import THEME

    before = _sizes(window)
    assert before["bars (px)"] == 22 and before["feature maps title"] == 12
    assert before["attention message"] == 16 and before["attribution message"] == 18
    assert before["top patches marker (px)"] == 3.0 and before["attention head ring"] == 24
    assert before["status message"] > 0
    THEME.set_scale(2.0)
    doubled = _sizes(window)
    assert doubled == {k: 2 * v for k, v in before.items()}
    THEME.set_scale(1.0)
    assert _sizes(window) == before
