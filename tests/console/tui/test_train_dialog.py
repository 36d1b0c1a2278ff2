"""The training dialog's profile choice, the request it makes, and cleanup after a failed start."""

from __future__ import annotations

from pathlib import Path

from console.cluster.training import planning_budget
from console.services.training_run import EVENTS, TrainRequest, discard_empty_run
from console.tui.screens.train_dialog import DEFAULT, FILE, profile_choices


def test_profile_choices_offer_measured_loaded_references_and_a_file():
    measured = {"b1": Path("/state/profiles/rack/b1-resnet18.json")}
    choices = profile_choices(measured, ("my.json", "/tmp/my.json"), ["orin", "tx2"])
    assert choices == [("cluster default", DEFAULT), ("measured on b1", "/state/profiles/rack/b1-resnet18.json"),
                       ("loaded: my.json", "/tmp/my.json"), ("reference orin", "orin"), ("reference tx2", "tx2"),
                       ("a file…", FILE)]
    # The profile loaded with `p` is the measured one: offered once.
    again = profile_choices(measured, ("measured on b1", "/state/profiles/rack/b1-resnet18.json"), [])
    assert [value for _, value in again].count("/state/profiles/rack/b1-resnet18.json") == 1


def test_the_request_passes_the_chosen_profile_to_train(tmp_path):
    argv = TrainRequest(profile="/p/b1.json").argv("rack.toml", tmp_path)
    assert argv[argv.index("--profile") + 1] == "/p/b1.json"
    assert "--profile" not in TrainRequest().argv("local", tmp_path)


def test_a_failed_start_leaves_no_empty_run_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / EVENTS).write_text("")
    assert discard_empty_run(empty) and not empty.exists()
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / EVENTS).write_text('{"type": "run_started"}\n')
    assert not discard_empty_run(trained) and trained.exists()
    assert not discard_empty_run(tmp_path / "never-made")


def test_planning_budget_subtracts_a_real_agents_runtime_only():
    assert planning_budget(3_000, 2_000, {"runtime_bytes": 700, "emulated": None}) == 1_300
    assert planning_budget(3_000, None, {"runtime_bytes": 700, "emulated": {"speed": 1}}) == 3_000
    assert planning_budget(3_000, None, {}) == 3_000


class _DialogHost:
    """A bare app that opens the training dialog and keeps what it was dismissed with."""

    @staticmethod
    def make():
        from textual.app import App

        from console.tui.screens.train_dialog import TrainDialog

        class Host(App):
            results: list = []

            def on_mount(self) -> None:
                self.push_screen(TrainDialog(), self.results.append)

        return Host()


async def test_ctrl_s_starts_with_the_form_as_it_is_and_the_footer_shows_it():
    app = _DialogHost.make()
    async with app.run_test() as pilot:
        await pilot.pause()
        from textual.widgets import Footer

        shown = [active.binding for active in app.screen.active_bindings.values()]
        assert any(binding.key == "ctrl+s" and binding.description == "Start" for binding in shown)
        assert app.screen.query(Footer)
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.results == [TrainRequest()]


async def test_enter_in_a_text_field_starts_and_a_bad_value_keeps_the_dialog_open():
    from textual.widgets import Input, Static

    app = _DialogHost.make()
    async with app.run_test() as pilot:
        await pilot.pause()
        field = app.screen.query_one("#iterations", Input)
        field.focus()
        field.value = "0"
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [] and "iterations must be" in str(app.screen.query_one("#problem", Static).render())
        field.value = "25"
        await pilot.press("enter")
        await pilot.pause()
    assert [(r.iterations, r.mode) for r in app.results] == [(25, "dynamic")]
