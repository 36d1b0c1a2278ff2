"""Emulated board timing: targets from a CWB profile, pacing with asyncio.sleep, overruns, memory need."""

import asyncio
import time
from dataclasses import replace

import pytest

from engine.cwb.cost import CostModel
from engine.cwb.transfer import Network
from engine.dhp.emulation import Emulation, stage_memory
from engine.errors import ConfigError
from tests.engine.cwb.synthetic import paper_like_profile


def test_targets_from_the_profile_slice():
    profile = paper_like_profile()
    layers = profile.layers[2:7]
    emu = Emulation.from_profile(profile, 2, 7, speed=2.0, time_scale=0.1, bandwidth=125e6, latency_ms=0.5)
    assert emu.forward_s == pytest.approx(sum(layer.forward_ms for layer in layers) * 0.1 / 2.0 / 1000)
    assert emu.backward_s == pytest.approx(sum(layer.backward_ms for layer in layers) * 0.1 / 2.0 / 1000)
    # The cut after unit 6 carries its output; the gradient back to stage 0 is unit 1's output size.
    assert emu.activation_send_s == pytest.approx(0.1 * (profile.layers[6].output_bytes / 125e6 + 0.0005))
    assert emu.gradient_send_s == pytest.approx(0.1 * (profile.layers[1].output_bytes / 125e6 + 0.0005))
    first = Emulation.from_profile(profile, 0, 2, speed=1.0, time_scale=1.0, bandwidth=125e6)
    last = Emulation.from_profile(profile, 7, len(profile.layers), speed=1.0, time_scale=1.0, bandwidth=125e6)
    assert first.gradient_send_s == 0.0 and last.activation_send_s == 0.0  # nothing upstream / downstream
    assert first.activation_send_s == pytest.approx(profile.layers[1].output_bytes / 125e6)


def test_only_the_first_stage_builds_batches_for_the_profiles_data_time():
    profile = replace(paper_like_profile(), data_ms=640.0)
    first = Emulation.from_profile(profile, 0, 2, speed=2.0, time_scale=0.1, bandwidth=125e6)
    later = Emulation.from_profile(profile, 2, 7, speed=2.0, time_scale=0.1, bandwidth=125e6)
    assert first.data_s == pytest.approx(640.0 * 0.1 / 2.0 / 1000) and later.data_s == 0.0
    assert Emulation.from_profile(paper_like_profile(), 0, 2, speed=1, time_scale=1, bandwidth=1e9).data_s == 0.0
    with pytest.raises(ConfigError, match="finite"):
        Emulation(speed=1, time_scale=1, forward_ms=1, backward_ms=1, output_bytes=0, input_bytes=0, bandwidth=1e9,
                  data_ms=float("nan"))


async def test_stretch_sleeps_the_remainder_without_counting_an_overrun():
    emu = Emulation(speed=1, time_scale=1, forward_ms=0, backward_ms=0, output_bytes=0, input_bytes=0, bandwidth=1e9)
    started = time.monotonic()
    cpu = time.process_time()
    assert await emu.stretch(started, 0.2) == 0.0
    assert time.monotonic() - started >= 0.2
    assert time.process_time() - cpu < 0.1  # slept, did not spin
    assert emu.report() == {"stretches": 1, "overruns": 0, "overrun_s": 0.0, "worst_overrun_s": 0.0}


async def test_a_step_slower_than_its_target_is_counted_not_hidden():
    emu = Emulation(speed=1, time_scale=1, forward_ms=0, backward_ms=0, output_bytes=0, input_bytes=0, bandwidth=1e9)
    started = time.monotonic() - 0.5  # the real work already took 0.5 s
    before = time.monotonic()
    over = await emu.stretch(started, 0.2)
    assert time.monotonic() - before < 0.05  # returns at once
    assert over == pytest.approx(0.3, abs=0.05)
    await emu.stretch(time.monotonic() - 0.1, 0.05)
    assert emu.overruns == 2 and emu.stretches == 2
    assert emu.overrun_s == pytest.approx(0.35, abs=0.05) and emu.worst_overrun_s == pytest.approx(over)


async def test_concurrent_stretches_overlap():
    emu = Emulation(speed=1, time_scale=1, forward_ms=0, backward_ms=0, output_bytes=0, input_bytes=0, bandwidth=1e9)
    started = time.monotonic()
    await asyncio.gather(*(emu.stretch(started, 0.2) for _ in range(5)))
    assert time.monotonic() - started < 0.6  # asyncio.sleep, not a blocking wait


def test_memory_need_is_cwbs_formula_split_by_kind():
    profile = paper_like_profile()
    memory = stage_memory(profile, 2, 7)
    model = CostModel(profile, Network(bandwidth=125e6))
    assert memory.total == model.memory_bytes(2, 7)
    layers = profile.layers[2:7]
    assert memory.weights == sum(layer.param_bytes for layer in layers)
    assert memory.activations == sum(layer.activation_bytes for layer in layers)
    assert memory.buffers == 2 * profile.layers[1].output_bytes + 2 * profile.layers[6].output_bytes
    memory.check(memory.total, "stage 2")  # fits exactly
    with pytest.raises(ConfigError) as info:
        memory.check(memory.total - 1, "stage 2 [2, 7) on tx2-1")
    message = str(info.value)
    assert message.startswith("stage 2 [2, 7) on tx2-1 needs ") and "cut buffers" in message and "budget is" in message
    assert stage_memory(profile, 0, len(profile.layers)).buffers == 0  # one stage: no cuts


def test_bad_settings_are_refused():
    profile = paper_like_profile()
    with pytest.raises(ConfigError, match="speed"):
        Emulation.from_profile(profile, 0, 2, speed=0, time_scale=1, bandwidth=1e9)
    with pytest.raises(ConfigError, match="time scale"):
        Emulation.from_profile(profile, 0, 2, speed=1, time_scale=float("nan"), bandwidth=1e9)
    with pytest.raises(ConfigError, match="bandwidth"):
        Emulation.from_profile(profile, 0, 2, speed=1, time_scale=1, bandwidth=0)
    with pytest.raises(ConfigError, match="inside the profile"):
        Emulation.from_profile(profile, 5, 99, speed=1, time_scale=1, bandwidth=1e9)
    with pytest.raises(ConfigError, match="inside the profile"):
        stage_memory(profile, 3, 3)
