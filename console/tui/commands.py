"""The console's commands in Textual's command palette (Ctrl+P): screens, each node, profiling, training."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.services.training_run import TrainRequest


class ConsoleCommands(Provider):
    """Every console action, plus one "open" and one "profile" command per node of the fleet."""

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """(title, help, callback) of every command, nodes in fleet order."""
        app = self.app
        items: list[tuple[str, str, Callable[[], object]]] = [
            ("Fleet", "Every node's state and load", partial(app.switch_mode, "fleet")),
            ("Partition", "CWB profile, candidates, cut points and replica plan", partial(app.switch_mode, "profile")),
            ("Training", "Live chain formation of the DHP run", partial(app.switch_mode, "training")),
            ("Logs", "What the console, profiling and training said", partial(app.switch_mode, "logs")),
            ("Load the TX2 reference profile", "The shipped Jetson TX2 ResNet-18 profile", app.load_reference_profile),
            ("Open a profile file", "A litesrl-profile JSON written by `litesrl profile`", app.ask_profile_file),
            ("Start dynamic training", "Dynamic chains (paper Fig. 4b), first-free next hop",
             partial(app.start_training, TrainRequest(mode="dynamic"))),
            ("Start fixed training", "Fixed chains (paper Fig. 4a), the baseline",
             partial(app.start_training, TrainRequest(mode="fixed"))),
            ("Start training…", "Choose chains, policy, iterations and averaging", app.ask_training),
            ("Stop training", "Interrupt the run in progress", app.stop_training),
            ("Help", "Key bindings", app.action_help),
        ]
        for view in app.fleet.views():
            name = view.info.name
            items.append((f"Node {name}", f"Live telemetry of {name} ({view.info.board})", partial(app.open_node, name)))
            items.append((f"Profile {name}", f"Run CWB profiling on {name}", partial(app.profile_node, name)))
        return items

    async def discover(self) -> Hits:
        for title, help_text, callback in self.commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self.commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
