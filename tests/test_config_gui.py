"""The per-machine config in the window: its default model and image, and the picker's list."""

from __future__ import annotations

import pytest

from vizapp.core import config


@pytest.fixture
def machine(monkeypatch, tmp_path):
    def write(text: str):
        path = tmp_path / "config.toml"
        path.write_text(text)
        monkeypatch.setenv("VIZAPP_CONFIG", str(path))
        config.reset_machine_config()
        return path

    yield write
    config.reset_machine_config()


def test_the_window_opens_the_configured_defaults_and_lists_only_the_configured_models(machine, make_window):
    machine('default_model = "vit_digits"\ndefault_image = "digit3"\n'
            'models = ["vit_digits", "tinyvgg_shapes"]\n')
    w = make_window(start=True)
    assert w.session.model.name == "vit_digits"
    assert w.session.image.name == "digit3.png"
    picker = w.model_view.picker
    assert [picker.itemData(i) for i in range(picker.count())] == ["vit_digits", "tinyvgg_shapes"]
    assert picker.currentData() == "vit_digits"


def test_the_command_line_wins_over_the_configured_defaults(machine, make_window):
    from vizapp.inputs.sources import resolve_image_source

    machine('default_model = "vit_digits"\ndefault_image = "digit3"\n')
    w = make_window(model="tinyvgg_shapes", image=str(resolve_image_source("star")))
    assert (w.session.model.name, w.session.image.name) == ("tinyvgg_shapes", "star.png")


def test_a_bad_config_stops_the_app_before_its_window(machine, capsys):
    import main

    path = machine("offline_only = 1\n")
    assert main.main(["gui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: offline_only must be a boolean" in err
