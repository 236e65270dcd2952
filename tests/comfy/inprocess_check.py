"""Run the DMT nodes in-process with ComfyUI's modules (not a server), the way execution.py
calls them (under torch.inference_mode()), and cancel the sampler and the inversion midway.
Prints one JSON line with what it found. Run in a subprocess by test_nodes_inprocess.py, so
that importing ComfyUI never touches the pytest process.

    python inprocess_check.py COMFYUI_DIR MODELS_DIFFUSERS_DIR [zeroscope|wan]

"wan" runs the same checks on the Wan path (model "dmt-tiny-wan"): the SMM-guided sampler with
optimise "positions" and gradient checkpointing (rotary-offset hook, checkpointing flag and the
installed prompt embeddings must all be gone after a cancel), and a cancelled inversion.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def state(model) -> dict:
    """What a run must leave as it found it, for a ZeroScope or a Wan: flags, grads, hooks, modes,
    the denoiser's weights, its checkpointing flag, and (Wan) no installed prompt embeddings."""
    from comfyui_dmt.dmt.models.interface import model_ops
    from comfyui_dmt.dmt.models.wan_ops import _INSTALLED

    denoiser = model_ops(model).denoiser(model)
    mods = [denoiser, model.vae, model.text_encoder]
    return {
        "requires_grad": [p.requires_grad for m in mods for p in m.parameters()],
        "grads": sum(p.grad is not None for m in mods for p in m.parameters()),
        "hooks": sum(len(x._forward_hooks) + len(x._forward_pre_hooks) + len(x._backward_hooks)
                     for m in mods for x in m.modules()),
        "training": [x.training for m in mods for x in m.modules()],
        "checksum": float(sum(p.detach().double().sum() for p in denoiser.parameters())),
        "grad_ckpt": bool(getattr(denoiser, "is_gradient_checkpointing", False)),
        "installed_prompts": len(_INSTALLED),
    }


def cancelled(run, stop: int, calls: dict, stop_at: dict, mm) -> str:
    """Run `run()` with Cancel pressed at progress call `stop`: "interrupted" or "finished"."""
    calls["n"], stop_at["n"] = 0, stop
    try:
        run()
        return "finished"
    except mm.InterruptProcessingException:
        return "interrupted"
    finally:
        mm.interrupt_current_processing(False)


def cancel_each(run, stops, state, before, calls: dict, stop_at: dict, mm) -> dict:
    """One cancelled run per stop: {"outcomes": [...], "state_ok_after_stop_<stop>": state() == before}."""
    out: dict = {"outcomes": []}
    for stop in stops:
        out["outcomes"].append(cancelled(run, stop, calls, stop_at, mm))
        out[f"state_ok_after_stop_{stop}"] = state() == before
    return out


def main(comfy_dir: str, diffusers_dir: str, kind: str = "zeroscope") -> dict:
    sys.path.insert(0, comfy_dir)
    import torch

    torch.set_num_threads(1)
    import comfy.options

    sys.argv = [sys.argv[0], "--cpu"]  # as `main.py --cpu`
    comfy.options.enable_args_parsing()
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    folder_paths.add_model_folder_path("diffusers", diffusers_dir, is_default=True)
    spec = importlib.util.spec_from_file_location("comfyui_dmt", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_dmt"] = pack
    spec.loader.exec_module(pack)
    from comfyui_dmt.nodes import dmt_nodes as N

    report: dict = {}

    calls = {"n": 0}

    def hook(value, total, preview, node_id=None, prompt_id=None):
        calls["n"] += 1
        if calls["n"] == stop_at["n"]:
            mm.interrupt_current_processing(True)  # what POST /interrupt does
        mm.throw_exception_if_processing_interrupted()  # what the server's progress hook does

    comfy.utils.set_progress_bar_global_hook(hook)
    stop_at = {"n": -1}

    if kind == "wan":
        return wan_report(report, calls, stop_at, mm)
    with torch.inference_mode():
        model = N.DMTLoadZeroScope.execute("dmt-tiny", "float32", "cpu").args[0]
        before = state(model)
        frames = torch.rand(6, 64, 64, 3)
        inv = N.DMTInvertVideo.execute(model, frames, "a car", 50, 64, 64, 6, 0, 1, 10).args[0]
        tg = N.DMTExtractTargets.execute(model, inv, 0.6, 1.0, 10).args[0]
        lat = N.DMTLowFrequencyInit.execute(inv, tg, 0, 4).args[0]
        report["latent_shape"] = list(lat["samples"].shape)
        report["latent_is_inference"] = lat["samples"].is_inference()
        args = (model, tg, lat, "a train", "bad", 10.0, 3, 0.007, 0.004, True, "cosine", 0)
        clean = N.DMTGuidedSampler.execute(*args).args
        report["images_shape"] = list(clean[0].shape)
        report["after_clean"] = state(model) == before

        # inside Adam iterations and between denoise passes
        report.update(cancel_each(lambda: N.DMTGuidedSampler.execute(*args), (2, 5, 13), lambda: state(model), before,
                                  calls, stop_at, mm))
        report["inversion_interrupt"] = cancelled(
            lambda: N.DMTInvertVideo.execute(model, frames, "a car", 50, 64, 64, 6, 0, 1, 10), 7, calls, stop_at, mm)
        report["inversion_calls"] = calls["n"]
        report["state_ok_after_inversion_stop"] = state(model) == before
        stop_at["n"] = -1
        again = N.DMTGuidedSampler.execute(*args).args
        report["rerun_equal"] = bool(torch.equal(again[0], clean[0]) and torch.equal(again[1]["samples"], clean[1]["samples"]))
        report["state_ok_end"] = state(model) == before
    return report


def wan_report(report: dict, calls: dict, stop_at: dict, mm) -> dict:
    """The Wan path under cancels (see the module docstring)."""
    import torch
    from comfyui_dmt.nodes import dmt_nodes as N
    from comfyui_dmt.nodes import wan_nodes as W

    with torch.inference_mode():
        model = W.DMTLoadWan.execute("dmt-tiny-wan", "float32", "cpu").args[0]
        before = state(model)
        frames = torch.rand(5, 64, 64, 3)
        inv = N.DMTInvertVideo.execute(model, frames, "a car", 50, 64, 64, 5, 0, 1, 10).args[0]
        tg = N.DMTExtractTargets.execute(model, inv, 0.6, 1.0, 10).args[0]
        lat = N.DMTLowFrequencyInit.execute(inv, tg, 0, 2).args[0]
        report["latent_shape"] = list(lat["samples"].shape)
        args = (model, tg, lat, "a train", "bad", 5.0, 3, 0.05, 0.05, False, "cosine", 0)
        extra = dict(gradient_checkpointing=True, guidance="smm", optimise="positions")
        clean = N.DMTGuidedSampler.execute(*args, **extra).args
        report["images_shape"] = list(clean[0].shape)
        report["positions"] = clean[2] is not None
        report["after_clean"] = state(model) == before
        # inside Adam iterations of the first guided steps and between Euler steps
        report.update(cancel_each(lambda: N.DMTGuidedSampler.execute(*args, **extra), (2, 5, 14),
                                  lambda: state(model), before, calls, stop_at, mm))
        report["inversion_interrupt"] = cancelled(
            lambda: N.DMTInvertVideo.execute(model, frames, "a car", 50, 64, 64, 5, 0, 1, 10), 4, calls, stop_at, mm)
        report["state_ok_after_inversion_stop"] = state(model) == before
        stop_at["n"] = -1
        again = N.DMTGuidedSampler.execute(*args, **extra).args
        report["rerun_equal"] = bool(torch.equal(again[0], clean[0]) and torch.equal(again[1]["samples"], clean[1]["samples"])
                                     and torch.equal(again[2].delta, clean[2].delta))
        report["state_ok_end"] = state(model) == before
        # the bundled toy Wan entry: loads offline from the package and makes 9 frames of 64x64
        from comfyui_dmt.dmt.toyworld.card import WAN_TOY_ENTRY

        toy = W.DMTLoadWan.execute(WAN_TOY_ENTRY, "float32", "cpu").args[0]
        report["toy_wan"] = [type(toy.transformer).__name__, list(toy.latent_shape(9, 64, 64))]
    return report


if __name__ == "__main__":
    print("DMT-REPORT " + json.dumps(main(sys.argv[1], sys.argv[2], *sys.argv[3:4])))
