"""The first step is timed from the denoiser's first computation: what an offload hook does
before it (copying the weights in) is `transfer_s`, not step 0. The hooks are the libraries'
own machinery (accelerate's, as model offload uses; diffusers', as group offloading uses); what
they do here, once, is a half-second wait standing in for the copy a CPU cannot make."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from bench.runner.timing import CallTimer

TRANSFER_S = 0.5


def _accelerate(module: torch.nn.Module) -> None:
    from accelerate.hooks import ModelHook, add_hook_to_module

    class OnceOnload(ModelHook):
        moved = False

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not self.moved:
                time.sleep(TRANSFER_S)
                self.moved = True
            return args, kwargs

    add_hook_to_module(module, OnceOnload())


def _diffusers(module: torch.nn.Module) -> None:
    from diffusers.hooks import HookRegistry, ModelHook

    class OnceOnload(ModelHook):
        moved = False

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not self.moved:
                time.sleep(TRANSFER_S)
                self.moved = True
            return args, kwargs

    HookRegistry.check_if_exists_or_initialize(module).register_hook(OnceOnload(), "onload")


@pytest.mark.parametrize("offload", [_accelerate, _diffusers], ids=["accelerate", "diffusers"])
def test_the_onload_before_step_0_is_its_own_part(offload: Any) -> None:
    denoiser = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    timer = CallTimer(torch.device("cpu"))
    timer.watch(denoiser)  # as the worker does, after the offload mode's hooks
    offload(denoiser)  # hooks added later still run inside forward, after the pre-hooks
    timer.reset()
    x = torch.zeros(1, 8)
    for step in range(3):
        x = denoiser(x)
        timer.on_step_end(None, step, None, {})
    timer.finish()
    summary = timer.summary()
    assert summary["transfer_s"] >= TRANSFER_S
    assert len(summary["step_s"]) == 3 and summary["step_s"][0] < TRANSFER_S
    parts = summary["encode_s"] + summary["transfer_s"] + sum(summary["step_s"])
    assert parts + summary["decode_s"] == pytest.approx(summary["wall_s"])


def test_without_offload_there_is_next_to_no_transfer() -> None:
    denoiser = torch.nn.Sequential(torch.nn.Linear(8, 8))
    timer = CallTimer(torch.device("cpu"))
    timer.watch(denoiser)
    timer.reset()
    denoiser(torch.zeros(1, 8))
    timer.on_step_end(None, 0, None, {})
    timer.finish()
    assert 0 <= timer.summary()["transfer_s"] < TRANSFER_S / 10
