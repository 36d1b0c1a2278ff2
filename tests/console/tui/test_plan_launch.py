"""A plan picked on the partition screen becomes the `litesrl train` options that run it."""

from __future__ import annotations

from pathlib import Path

from console.cli.partition_plans import train_command
from console.services.training_run import TrainRequest
from engine.cwb.fastest import PlanOption


def test_a_picked_dynamic_plan_carries_cut_replicas_policy_and_accounting():
    request = TrainRequest(mode="dynamic", policy="earliest-finish", cut_after=("maxpool", "layer1_1"),
                           replicas=(3, 2, 1), memory_accounting="paper")
    argv = request.argv("local", Path("/tmp/run"))
    assert argv[argv.index("--cut-after") + 1] == "maxpool,layer1_1"
    assert argv[argv.index("--replicas") + 1] == "3/2/1"
    assert argv[argv.index("--policy") + 1] == "earliest-finish"
    assert argv[argv.index("--memory-accounting") + 1] == "paper"


def test_a_plain_request_keeps_cwbs_choice_and_fixed_chains_take_no_replicas():
    argv = TrainRequest(mode="fixed", replicas=(2, 2, 2)).argv("local", Path("/tmp/run"))
    assert "--cut-after" not in argv and "--replicas" not in argv and "--memory-accounting" not in argv


def test_the_cli_prints_the_same_command():
    option = PlanOption("recommended", (3, 5), ("maxpool", "layer1_1"), "dynamic", "first_free",
                        (("a", "b", "c"), ("d", "e"), ("f",)), True, 2736.0)
    assert train_command(option, "paper") == ("litesrl train --cut-after maxpool,layer1_1 --mode dynamic "
                                              "--replicas 3/2/1 --policy first-free --memory-accounting paper")
