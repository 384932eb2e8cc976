"""The Attention dock: where a Vision Transformer's tokens look.

Four modes over one ``vizapp.explain.attention.AttentionResult``:

- **Head**: the class token's attention in one layer and head (or the mean of the
  heads) over the input as the model saw it; beside it the same query in every head
  of the layer. Click a patch to make it the query instead (click it again or press
  Escape for the class token).
- **Grid**: every layer × head map of the class token in one mosaic; click a map to
  open it in Head mode.
- **Rollout**: attention rollout (Abnar & Zuidema 2020), or on request the
  gradient-weighted rollout for a class (Chefer et al. 2021).
- **Distance**: the ViT paper's mean attention distance, one dot per head.

The view only paints: the explain controller (``widgets/controllers/explain.py``) runs
the attention job and hands the result to :meth:`AttentionView.set_result`. Everything
here is numpy; nothing imports torch (the result's methods do the engine's numpy work).
Its widgets are built in ``widgets/attention_layout.py``.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from vizapp.probing.mosaic import Mosaic
from widgets.attention_layout import (
    FUSION_NAMES,
    FUSIONS,
    HINTS,
    IDLE_MESSAGE,
    MODES,
    OWN_QUERY,
    AttentionLayout,
    tile_mosaic,
    upsample,
)
from widgets.common import heading
from widgets.theme import THEME, bind_font

__all__ = ["AttentionView", "MODES", "FUSIONS", "OWN_QUERY"]


class AttentionView(AttentionLayout, QWidget):
    """Attention maps, rollout and attention distance of one ViT forward pass.

    Feed it with :meth:`set_result` (a ``vizapp.explain.attention.AttentionResult``) or
    :meth:`set_message`; given a session, it names the ViTs to try from its model catalog. Layer, head, mode and query survive a new result where they
    still exist (clamped to a smaller model; the query resets when the tokens change).

    Signals
    -------
    sigGradientChanged(bool)
        The "gradient-weighted" box was toggled: the attention job runs again with (or
        without) gradients; until a result with ``gradient`` arrives the rollout page
        says it is computing.
    """

    sigGradientChanged = Signal(bool)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = None  # AttentionResult
        self._mode, self._layer, self._head, self._query = "head", 0, None, OWN_QUERY
        self._layout = None  # the TokenLayout the query refers to
        self._map: np.ndarray | None = None  # the grid-resolution map under the overlay
        self._shown = np.zeros((0, 0), np.float32)
        self._rollouts: dict[tuple[str, float], np.ndarray] = {}
        self._grid: Mosaic | None = None
        self._strip: Mosaic | None = None
        self.head_maps = np.zeros((0, 0, 0), np.float32)  # the query's maps in the layer, per head
        self.setFocusPolicy(Qt.StrongFocus)

        self.title = heading("Attention", "title")
        self.banner = QLabel("UNTRAINED: random weights, not learned attention")
        self.banner.setAlignment(Qt.AlignCenter)
        bind_font(self.banner, "title", True, lambda: (
            f"background: {THEME.colour('untrained')}; color: white; font-weight: bold;"
            f" font-size: {THEME.css('title')}; padding: {THEME.px(6):g}px; border-radius: {THEME.px(4):g}px;"
        ))
        self.banner.setVisible(False)
        self._build_controls()
        self._build_pages()
        self.caption = heading("", "subheading", bold=False)
        self.readout = heading("", "body", bold=False)
        self.hint = heading("", "small", bold=False)
        layout = QVBoxLayout(self)
        for w in (self.title, self.banner, self.controls):
            layout.addWidget(w)
        layout.addWidget(self.pages, 1)
        for w in (self.caption, self.readout, self.hint):
            layout.addWidget(w)
        self.set_mode("head")
        self._idle = IDLE_MESSAGE
        self.set_message(self._idle)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        if session is not None:  # the catalog says which ViTs load here: name them while idle
            session.events.catalog.connect(self._catalog_changed)

    def _catalog_changed(self, catalog: tuple) -> None:
        from vizapp.explain.suggestions import suggestion_text

        self.set_suggestion(suggestion_text("vit", catalog[0]))

    # --- the setters -------------------------------------------------------------
    def set_result(self, result) -> None:
        """Show a ``vizapp.explain.attention.AttentionResult`` in the current mode.

        Keeps the layer, head, mode and query token where the new result has them:
        layer and head are clamped to a smaller model, and the query goes back to the
        class token when the token layout changes.
        """
        self.result = result
        if result.layout != self._layout:
            self._query = OWN_QUERY
        self._layout = result.layout
        self._rollouts.clear()
        self._grid = None
        n_layers, heads = result.attention.shape[:2]
        with QSignalBlocker(self.layer_box), QSignalBlocker(self.head_box):
            self.layer_box.setRange(0, n_layers - 1)
            if self.head_box.count() != heads + 1:
                self.head_box.clear()
                self.head_box.addItems(["mean of heads", *(f"head {h}" for h in range(heads))])
        self._layer = min(self._layer, n_layers - 1)
        self._head = None if self._head is None else min(self._head, heads - 1)
        self.base.setImage(result.display, levels=(0, 255), autoLevels=False)
        self.banner.setVisible(not result.trained)
        label = f"“{result.target_label}”" if result.target_label else "the class picked in Predictions"
        self.gradient.setText(f"Gradient-weighted for {label}")
        gh, gw = result.layout.grid
        self.title.setText(
            f"Attention: {n_layers} layers × {heads} heads, {gh}×{gw} patches of "
            f"{result.layout.patch} px"
        )
        self.title.setToolTip("\n".join(result.notes))
        self._set_distance(result)
        for w in (self.controls, self.caption, self.readout, self.hint):
            w.setVisible(True)
        self.set_mode(self._mode)  # leaves the message page, renders
        self.view.autoRange(padding=0.01)
        self.strip_view.autoRange(padding=0.02)

    def set_message(self, text: str) -> None:
        """Show ``text`` large and centred instead of the maps (e.g. why there is no attention)."""
        self.result = None
        self._map = None
        self._shown = np.zeros((0, 0), np.float32)
        self.message.setText(text)
        self.pages.setCurrentWidget(self.message)
        self.title.setText("Attention")
        self.title.setToolTip("")
        for w in (self.banner, self.controls, self.caption, self.readout, self.hint):
            w.setVisible(False)

    def set_suggestion(self, models: str) -> None:
        """Name the Vision Transformers to open while nothing is shown (``vizapp.explain.suggestions``:
        what loads here first). Replaces the waiting message, never a result or a reason."""
        idle = f"{IDLE_MESSAGE}.\nTry {models}" if models else IDLE_MESSAGE
        showing_idle = self.message_shown() and self.message.text() == self._idle
        self._idle = idle
        if showing_idle:
            self.set_message(idle)

    def set_mode(self, mode: str) -> None:
        """One of :data:`MODES`: ``"head"``, ``"grid"``, ``"rollout"`` or ``"distance"``."""
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, not '{mode}'")
        self._mode = mode
        self.mode_buttons[mode].setChecked(True)
        self.pickers.setVisible(mode != "rollout")
        self.cls_button.setVisible(mode == "head")
        self.rollout_controls.setVisible(mode == "rollout")
        self.opacity_controls.setVisible(mode in ("head", "rollout"))
        self.strip.setVisible(mode == "head")
        self.hint.setText(HINTS[mode])
        if self.result is None:
            return
        page = {"head": "image", "rollout": "image"}.get(mode, mode)
        self.pages.setCurrentWidget(self._page[page])
        self.readout.setText("")
        self._render()

    def set_layer_head(self, layer: int, head: int | None) -> None:
        """Show ``layer`` and ``head`` (``None``: the mean of the heads), clamped to the model."""
        if self.result is not None:
            n_layers, heads = self.result.attention.shape[:2]
            layer = min(max(0, int(layer)), n_layers - 1)
            head = None if head is None else min(max(0, int(head)), heads - 1)
        self._layer, self._head = max(0, int(layer)), head
        self._render()

    def set_query(self, token: int) -> None:
        """Make ``token`` the query: :data:`OWN_QUERY` for the model's own (its class token,
        or the mean patch query without one), else a token index (patches from
        ``layout.prefix`` on). Token 0 of a model with a class token is its own query."""
        token = int(token)
        if self.result is not None and token != OWN_QUERY:
            if not 0 <= token < self.result.layout.tokens:
                raise ValueError(f"token {token} is outside 0..{self.result.layout.tokens - 1}")
            if token == 0 and self.result.has_class_token:
                token = OWN_QUERY
        self._query = token
        self._render()

    # --- getters -----------------------------------------------------------------
    def gradient_wanted(self) -> bool:
        return self.gradient.isChecked()

    def mode(self) -> str:
        return self._mode

    def layer(self) -> int:
        return self._layer

    def head(self) -> int | None:
        """The head shown, or ``None`` for the mean of the heads."""
        return self._head

    def query_token(self) -> int:
        """The query token, or :data:`OWN_QUERY` for the class token / mean patch query."""
        return self._query

    def query_patch(self) -> tuple[int, int] | None:
        """``(row, col)`` of the query patch, or ``None`` for a prefix token."""
        lay = self.result.layout if self.result is not None else None
        if lay is None or self._query < lay.prefix:
            return None
        return divmod(self._query - lay.prefix, lay.grid[1])

    def message_shown(self) -> bool:
        return self.pages.currentWidget() is self.message

    def displayed_image(self) -> np.ndarray:
        """What the mode's main image shows: the overlay (H x W float, head and rollout
        modes), the grid mosaic (uint8 codes for :data:`LUT_TILES`), or an empty array."""
        return self._shown

    # --- rendering ---------------------------------------------------------------
    def _sync_pickers(self) -> None:
        with QSignalBlocker(self.layer_box), QSignalBlocker(self.head_box):
            self.layer_box.setValue(self._layer)
            self.head_box.setCurrentIndex(0 if self._head is None else self._head + 1)
        if self.result is not None:
            self.layer_box.setToolTip(self.result.layers[self._layer])
        self.cls_button.setEnabled(self._query != OWN_QUERY)

    def _head_name(self) -> str:
        return f"mean of {self.result.heads} heads" if self._head is None else f"head {self._head}"

    def _query_name(self) -> str:
        patch = self.query_patch()
        if patch is not None:
            return f"patch (row {patch[0]}, col {patch[1]})"
        if self._query == OWN_QUERY:
            return "the class token" if self.result.has_class_token else "the mean patch query (no class token)"
        return f"prefix token {self._query}"

    def _render(self) -> None:
        self._sync_pickers()
        if self.result is None or self.message_shown():
            return
        self.busy.setVisible(False)
        {
            "head": self._render_head,
            "grid": self._render_grid,
            "rollout": self._render_rollout,
            "distance": self._render_distance,
        }[self._mode]()

    def _show_map(self, grid_map: np.ndarray) -> None:
        self._map = np.asarray(grid_map, dtype=np.float32)
        h, w = self.result.display.shape[:2]
        self._shown = upsample(self._map, h, w, self.smooth.isChecked())
        top = float(self._shown.max())
        self.overlay.setImage(self._shown, levels=(0.0, top if top > 0 else 1.0), autoLevels=False)

    def _patch_rect(self, row: int, col: int) -> QRectF:
        h, w = self.result.display.shape[:2]
        gh, gw = self.result.layout.grid
        return QRectF(col * w / gw, row * h / gh, w / gw, h / gh)

    def _render_head(self) -> None:
        r, layer = self.result, self._layer
        # The own query is the class token; a ViT without one is read by its mean patch query.
        own = self._query == OWN_QUERY
        maps = np.asarray(r.cls_maps(layer) if own else r.token_maps(self._query)[layer], dtype=np.float32)
        self.head_maps = maps
        shown = maps.mean(axis=0) if self._head is None else maps[self._head]
        self._show_map(shown)
        patch = self.query_patch()
        self.outline.setVisible(patch is not None)
        if patch is not None:
            self.outline.setRect(self._patch_rect(*patch))
        prefix = (
            "the class token" if r.layout.prefix == 1 and r.has_class_token
            else f"the {r.layout.prefix} prefix tokens"
        )
        rest = f"{100 * max(0.0, 1.0 - float(shown.sum())):.0f}% of its attention goes to {prefix}"
        self.caption.setText(
            f"Layer {layer}, {self._head_name()}: where {self._query_name()} looks ({rest})"
        )
        self._set_strip(maps)

    def _render_grid(self) -> None:
        r = self.result
        if self._grid is None:
            cls = np.asarray(r.cls_maps(), dtype=np.float32)
            n_layers, heads, gh, gw = cls.shape
            m = self._grid = tile_mosaic(cls.reshape(n_layers * heads, gh, gw), heads)
            self.grid_image.setImage(m.image, levels=(0, 255), autoLevels=False)
            every = max(1, int(np.ceil(max(n_layers, heads) / 24)))  # a number per tile up to 24
            rows = [
                (str(ly), QPointF(-m.gap, m.tile_origin(ly * heads)[1] + m.tile_h / 2))
                for ly in range(0, n_layers, every)
            ]
            cols = [
                (str(h), QPointF(m.tile_origin(h)[0] + m.tile_w / 2, -m.gap))
                for h in range(0, heads, every)
            ]
            self._set_labels(self.row_labels, rows, (1, 0.5))
            self._set_labels(self.col_labels, cols, (0.5, 1))
            self.grid_corner.setPos(-m.gap, -m.gap - m.tile_h * 0.6)
            margin = 2.2 * (m.tile_h + m.gap)  # room for the numbers and the corner title
            self.grid_view.setRange(
                xRange=(-margin, m.image.shape[1]), yRange=(-margin, m.image.shape[0]), padding=0.01
            )
        m = self._grid
        self._shown = m.image
        heads = self.result.heads
        if self._head is None:  # the whole layer
            x, y = m.tile_origin(self._layer * heads)
            rect = QRectF(x, y, m.cols * (m.tile_w + m.gap) - m.gap, m.tile_h)
        else:
            x, y = m.tile_origin(self._layer * heads + self._head)
            rect = QRectF(x, y, m.tile_w, m.tile_h)
        self.grid_marker.setRect(rect.adjusted(-0.5, -0.5, 0.5, 0.5))
        self.caption.setText(
            f"Where {'the class token' if r.has_class_token else 'the mean patch query'} looks in every "
            "layer (down) and head (across), each map "
            "scaled to its own max. Click a map to open it."
        )

    def _render_rollout(self) -> None:
        r = self.result
        self.outline.setVisible(False)
        if self.gradient.isChecked():
            label = r.target_label or "the top class"
            grad = r.gradient_map()
            if grad is None:
                self._map = None
                self._shown = np.zeros((0, 0), np.float32)
                self.overlay.clear()
                h, w = r.display.shape[:2]
                self.busy.setText("computing…")
                self.busy.setPos(w / 2, h / 2)
                self.busy.setVisible(True)
                self.caption.setText(f"Computing the gradient-weighted rollout for “{label}”…")
                return
            self._show_map(grad)
            self.caption.setText(
                f"Gradient-weighted rollout for “{label}” (Chefer et al. 2021): the patches "
                "whose attention raises that class score"
            )
            return
        fusion, discard = self.fusion.currentData(), self.discard.value() / 100
        key = (fusion, discard)
        if key not in self._rollouts:
            self._rollouts[key] = np.asarray(r.rollout(fusion, discard), dtype=np.float32)
        self._show_map(self._rollouts[key])
        dropped = f", weakest {self.discard.value()}% dropped" if discard else ""
        self.caption.setText(
            f"Attention rollout through all {r.attention.shape[0]} layers "
            f"({FUSION_NAMES[fusion].lower()}{dropped}): where the "
            f"{'class token' if r.has_class_token else 'mean patch'}'s information comes from"
        )

    def _render_distance(self) -> None:
        d = self.result.distance
        self._shown = np.zeros((0, 0), np.float32)
        if self._head is None:
            self.distance_mark.setData(x=[self._layer], y=[float(d[self._layer].mean())])
        else:
            x, y = self.distance_dots.getData()
            i = self._layer * d.shape[1] + self._head
            self.distance_mark.setData(x=[x[i]], y=[y[i]])
        self.caption.setText(
            "Each dot is one head; the line is the mean over heads. Distance between patch "
            "centres weighted by attention, averaged over query patches (ViT paper, Fig. 7). "
            "Click a dot to open that head."
        )

    # --- interaction -------------------------------------------------------------
    def _discard_changed(self, value: int) -> None:
        self.discard_label.setText(f"discard {value}%")
        if self._mode == "rollout":
            self._render()

    def _gradient_toggled(self, on: bool) -> None:
        self.fusion.setEnabled(not on)  # the gradient-weighted rollout has no fusion or discard
        self.discard.setEnabled(not on)
        self.sigGradientChanged.emit(on)
        if self._mode == "rollout":
            self._render()

    def _patch_at(self, scene_pos) -> tuple[int, int] | None:
        r = self.result
        if r is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.view.mapSceneToView(scene_pos)
        h, w = r.display.shape[:2]
        if not (0 <= p.x() < w and 0 <= p.y() < h):
            return None
        gh, gw = r.layout.grid
        return int(p.y() * gh / h), int(p.x() * gw / w)

    def _image_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._mode != "head":
            return
        patch = self._patch_at(event.scenePos())
        if patch is None:
            return
        self.setFocus()
        token = self.result.patch_token(*patch)
        self.set_query(OWN_QUERY if token == self._query else token)

    def _image_hovered(self, args) -> None:
        patch = self._patch_at(args[0])
        if patch is None or self._map is None or self._mode not in ("head", "rollout"):
            return
        value = float(self._map[patch])
        what = (
            f"{100 * value:.1f}% of the attention"
            if self._mode == "head"
            else f"rollout {value:.4f}"
        )
        self.readout.setText(f"patch (row {patch[0]}, col {patch[1]}): {what}")

    def _strip_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._strip is None or self.result is None:
            return
        p = self.strip_view.mapSceneToView(event.scenePos())
        slot = self._strip.slot_at(p.x(), p.y())
        if slot is not None:
            self.setFocus()
            self.set_layer_head(self._layer, slot)

    def _grid_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._grid is None or self.result is None:
            return
        p = self.grid_view.mapSceneToView(event.scenePos())
        slot = self._grid.slot_at(p.x(), p.y())
        if slot is not None:
            self.setFocus()
            self._layer, self._head = divmod(slot, self.result.heads)
            self.set_mode("head")

    def _dot_clicked(self, _item, points, _event) -> None:
        if len(points):
            self._layer, self._head = divmod(int(points[0].data()), self.result.heads)
            self.setFocus()
            self.set_mode("head")

    def step_layer(self, delta: int) -> None:
        self.set_layer_head(self._layer + delta, self._head)

    def step_head(self, delta: int) -> None:
        """Step through mean, head 0, head 1, …, clamped at both ends."""
        if self.result is None:
            return
        slot = min(
            max(-1, (-1 if self._head is None else self._head) + delta), self.result.heads - 1
        )
        self.set_layer_head(self._layer, None if slot < 0 else slot)

    def event(self, event) -> bool:  # Qt override
        # With a patch as the query, Escape is ours (back to the class token), not the
        # window's cancel shortcut.
        if event.type() == QEvent.ShortcutOverride and event.key() == Qt.Key_Escape and self._query != OWN_QUERY:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        key = event.key()
        if key in (Qt.Key_Up, Qt.Key_Down):
            self.step_layer(1 if key == Qt.Key_Down else -1)
        elif key in (Qt.Key_Left, Qt.Key_Right):
            self.step_head(1 if key == Qt.Key_Right else -1)
        elif key == Qt.Key_Escape and self._query != OWN_QUERY:
            self.set_query(OWN_QUERY)
        else:
            super().keyPressEvent(event)

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """Mode, layer, head (``None``: the mean), query, overlay and rollout settings, for a scene."""
        return {"mode": self._mode, "layer": self._layer, "head": self._head, "query": self._query,
                "opacity": self.opacity.value(), "smooth": self.smooth.isChecked(),
                "fusion": self.fusion.currentData(), "discard": self.discard.value(),
                "gradient": self.gradient.isChecked()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown keys and values are skipped; layer, head
        and query are clamped to the result on screen, or kept for the next one)."""
        from widgets.options import set_check, set_combo, set_slider

        set_slider(self.opacity, options.get("opacity"))
        set_check(self.smooth, options.get("smooth"))
        set_combo(self.fusion, options.get("fusion"))
        set_slider(self.discard, options.get("discard"))
        set_check(self.gradient, options.get("gradient"))
        layer, head = options.get("layer", self._layer), options.get("head", self._head)
        if isinstance(layer, int) and not isinstance(layer, bool) and (head is None or isinstance(head, int)):
            self.set_layer_head(layer, head)
        query = options.get("query")
        if isinstance(query, int) and not isinstance(query, bool):
            try:
                self.set_query(query)
            except ValueError:  # a token this model does not have: the model's own query
                self.set_query(OWN_QUERY)
        if options.get("mode") in MODES:
            self.set_mode(options["mode"])
