"""ComfyUI's model management and the DMT nodes, checked in-process (ComfyUI's modules imported,
`--cpu`, no server) where a server cannot show it: what `current_loaded_models` holds, what
`unload_all_models` (= "Free model and node cache") does to our weights, Cancel landing in the
middle of the VAE decode, and the low-VRAM path. Prints one JSON line. Run in a subprocess by
test_citizen.py so that the pytest process never imports ComfyUI.

    python citizen_inprocess.py COMFYUI_DIR MODELS_DIFFUSERS_DIR
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(comfy_dir: str, diffusers_dir: str) -> dict:
    sys.path.insert(0, comfy_dir)
    import torch

    torch.set_num_threads(1)
    import comfy.options

    sys.argv = [sys.argv[0], "--cpu"]
    comfy.options.enable_args_parsing()
    import comfy.model_management as mm
    import comfy.sd
    import comfy.taesd.taesd
    import comfy.utils
    import folder_paths

    folder_paths.add_model_folder_path("diffusers", diffusers_dir, is_default=True)
    spec = importlib.util.spec_from_file_location("comfyui_dmt", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_dmt"] = pack
    spec.loader.exec_module(pack)
    from comfyui_dmt.nodes import dmt_nodes as N
    from comfyui_dmt.nodes import model_management as M

    report: dict = {}

    def loaded_names():
        return sorted(type(lm.model.model).__name__ for lm in mm.current_loaded_models if lm.model is not None)

    def weights(model):
        return [p.detach().clone() for m in (model.unet, model.vae, model.text_encoder) for p in m.parameters()]

    def same(a, b):
        return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))

    calls = {"n": 0}
    stop_at = {"n": -1}

    def hook(value, total, preview, node_id=None, prompt_id=None):
        calls["n"] += 1
        if calls["n"] == stop_at["n"]:
            mm.interrupt_current_processing(True)  # what POST /interrupt does
        mm.throw_exception_if_processing_interrupted()  # what the server's progress hook does

    comfy.utils.set_progress_bar_global_hook(hook)

    with torch.inference_mode():
        # A second, tiny model of ComfyUI's own: a random TAESD VAE, decoded once (load_models_gpu).
        taesd = comfy.taesd.taesd.TAESD()
        sd = {f"taesd_encoder.{k}": v for k, v in taesd.taesd_encoder.state_dict().items()}
        sd |= {f"taesd_decoder.{k}": v for k, v in taesd.taesd_decoder.state_dict().items()}
        sd["vae_scale"], sd["vae_shift"] = torch.tensor(0.18215), torch.tensor(0.0)
        vae = comfy.sd.VAE(sd=sd)
        vae.decode(torch.zeros(1, 4, 8, 8))
        report["after_taesd"] = loaded_names()

        model = N.DMTLoadZeroScope.execute("dmt-tiny", "float32", "auto").args[0]
        report["loader_registers_nothing_yet"] = M.loaded_components(model) == []
        loaded_weights = weights(model)
        frames = torch.rand(6, 64, 64, 3)
        inv = N.DMTInvertVideo.execute(model, frames, "a car", 50, 64, 64, 6, 0, 1, 10).args[0]
        report["after_invert"] = M.loaded_components(model)
        tg = N.DMTExtractTargets.execute(model, inv, 0.6, 1.0, 10).args[0]
        lat = N.DMTLowFrequencyInit.execute(inv, tg, 0, 4).args[0]
        args = (model, tg, lat, "a train", "bad", 10.0, 2, 0.007, 0.004, True, "cosine", 0)
        calls["n"] = 0
        clean = N.DMTGuidedSampler.execute(*args).args
        report["sampler_progress_calls"] = calls["n"]  # 4 x 2 Adam + 10 + 9 denoise + 6 decode chunks
        report["after_sampler"] = loaded_names()

        # "Free model and node cache": ComfyUI's unload_all_models.
        mm.unload_all_models()
        report["after_free"] = loaded_names()
        report["weights_exact_after_free"] = same(weights(model), loaded_weights)
        report["devices_after_free"] = sorted({str(p.device) for p in model.unet.parameters()})

        # Cancel during the VAE decode: after the 2nd of 6 decode chunks.
        decoder_calls = {"n": 0}
        handle = model.vae.decoder.register_forward_hook(lambda *a: decoder_calls.__setitem__("n", decoder_calls["n"] + 1))
        calls["n"], stop_at["n"] = 0, 8 + 10 + 9 + 2
        try:
            N.DMTGuidedSampler.execute(*args)
            report["decode_cancel"] = "finished"
        except mm.InterruptProcessingException:
            report["decode_cancel"] = "interrupted"
        finally:
            mm.interrupt_current_processing(False)
            handle.remove()
        report["decoder_calls_before_cancel"] = decoder_calls["n"]
        stop_at["n"] = -1
        again = N.DMTGuidedSampler.execute(*args).args
        report["rerun_equal"] = bool(torch.equal(again[0], clean[0]) and torch.equal(again[1]["samples"], clean[1]["samples"]))
        report["weights_exact_after_cancel"] = same(weights(model), loaded_weights)

        # Low-VRAM mode (--lowvram): only the UNet goes through load_models_gpu, the rest waits
        # on the CPU except while it runs; the same frames.
        mm.unload_all_models()
        saved_state = mm.vram_state
        mm.vram_state = mm.VRAMState.LOW_VRAM
        try:
            low = N.DMTGuidedSampler.execute(*args).args
            report["low_vram_loaded"] = M.loaded_components(model)
        finally:
            mm.vram_state = saved_state
        report["low_vram_max_diff"] = float((low[0] - clean[0]).abs().max())
        report["weights_exact_end"] = same(weights(model), loaded_weights)
        report["hooks_end"] = sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                                  for mod in (model.unet, model.vae, model.text_encoder) for m in mod.modules())
    return report


if __name__ == "__main__":
    print("DMT-REPORT " + json.dumps(main(sys.argv[1], sys.argv[2])))
