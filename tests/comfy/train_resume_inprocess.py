"""Train Motion (DMT) checkpoints and resumes like the CLI: run the node in-process with ComfyUI's
modules (not a server), the way execution.py calls it (under torch.inference_mode()), Cancel it
through ComfyUI's progress hook (what POST /interrupt does) or kill the process mid-training, and
run it again. Prints one JSON line with what it found. Run in a subprocess by test_train_resume.py,
so that importing ComfyUI never touches the pytest process.

    python train_resume_inprocess.py COMFYUI_DIR MODELS_DIFFUSERS_DIR OUTPUT_DIR MODE

MODE: "cancel" (cancel, resume, finished run, resume off, other settings, fewer steps), "crash"
(the process dies at train step 5; exit code 3) or "after-crash" (a new process: resume it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRAMES, SIZE = 4, 64


def main(comfy_dir: str, diffusers_dir: str, output_dir: str, mode: str) -> dict:
    sys.path.insert(0, comfy_dir)
    import torch

    torch.set_num_threads(1)
    import comfy.options

    sys.argv = [sys.argv[0], "--cpu"]
    comfy.options.enable_args_parsing()
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    folder_paths.add_model_folder_path("diffusers", diffusers_dir, is_default=True)
    folder_paths.set_output_directory(output_dir)
    spec = importlib.util.spec_from_file_location("comfyui_dmt", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_dmt"] = pack
    spec.loader.exec_module(pack)
    from comfyui_dmt.nodes import comfy_glue as G
    from comfyui_dmt.nodes import customize_nodes as C
    from comfyui_dmt.nodes import dmt_nodes as N
    from comfyui_dmt.dmt.customize.train_state import read_train_state_info, state_path

    now = {"stage": None, "step": -1}
    stop = {"at": -1, "crash": False}
    call = G.Progress.__call__

    def spy(self, stage, step, total, latent):  # which library stage the progress bar is at
        now.update(stage=stage, step=step)
        return call(self, stage, step, total, latent)

    G.Progress.__call__ = spy

    def hook(value, total, preview, node_id=None, prompt_id=None):
        if now["stage"] == "train" and now["step"] == stop["at"]:
            if stop["crash"]:
                os._exit(3)  # the process dies: no exception handler runs, no state is saved now
            mm.interrupt_current_processing(True)  # what POST /interrupt does
        mm.throw_exception_if_processing_interrupted()  # what the server's progress hook does

    comfy.utils.set_progress_bar_global_hook(hook)
    report: dict = {}

    def clip(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        frames = torch.rand(FRAMES, SIZE, SIZE, 3, generator=g) * 0.2
        for i in range(FRAMES):
            frames[i, 24:40, 4 + 8 * i: 20 + 8 * i] = torch.tensor([0.95, 0.9, 0.3])
        return frames

    with torch.inference_mode():
        model = N.DMTLoadZeroScope.execute("dmt-tiny", "float32", "cpu").args[0]
        ex = None
        for i in range(2):
            ex = C.DMTMotionExamples.execute(clip(i), "a sks blob", "sks", FRAMES, SIZE, SIZE, 1, ex).args[0]

        def train(steps=6, lr=0.01, seed=0, resume=True, checkpoint_every=2, validation_steps=0):
            out = C.DMTTrainMotion.execute(model, ex, "lora", 2, steps, lr, "coarse", 1.0, seed, "", validation_steps,
                                           9.0, False, None, checkpoint_every, resume)
            return out.args[0], out.ui["text"]

        def run_dirs():
            root = Path(output_dir) / C.TRAINING_FOLDER
            return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

        def saved_step(name):
            info = read_train_state_info(state_path(Path(output_dir) / C.TRAINING_FOLDER / name))
            return None if info is None else info["step"]

        def same(a, b):
            return a.tensors.keys() == b.tensors.keys() and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)

        if mode == "crash":
            stop.update(at=5, crash=True)
            train(seed=1)
            report["crash"] = "the process did not die"
            return report
        if mode == "after-crash":
            (name,) = run_dirs()
            report["saved_step_after_crash"] = saved_step(name)
            motion, text = train(seed=1)
            report["after_crash_text"] = text
            report["after_crash_steps"] = motion.info["steps"]
            return report

        # 1. Cancel after train step 3: the state of step 3 is saved (Cancel saves it; the periodic
        #    checkpoint was at step 2).
        stop["at"] = 3
        try:
            train()
            report["cancel"] = "finished"
        except mm.InterruptProcessingException:
            report["cancel"] = "interrupted"
        finally:
            mm.interrupt_current_processing(False)
            stop["at"] = -1
        (name,) = run_dirs()
        report["run_dir"] = name
        report["saved_step_after_cancel"] = saved_step(name)
        report["motion_snapshots"] = sorted(p.name for p in (Path(output_dir) / C.TRAINING_FOLDER / name /
                                                             "checkpoints").iterdir())
        # 2. Queue it again (resume on): continues from step 3.
        resumed, report["resume_text"] = train()
        report["resumed_steps"] = resumed.info["steps"]
        # 3. Once more: the run is finished, nothing is trained, same motion.
        again, report["finished_text"] = train()
        report["finished_same"] = same(again, resumed)
        # 4. Resume off: a fresh, uninterrupted run of the same settings gives the same motion (the
        #    resume was exact).
        fresh, report["fresh_text"] = train(resume=False)
        report["resume_equals_uninterrupted"] = same(fresh, resumed)
        # 5. Other settings: another folder, never the saved state of the first run.
        _, report["other_lr_text"] = train(lr=0.02, steps=2)
        report["run_dirs"] = run_dirs()
        # 6. Fewer steps than the saved state: refused with what to do.
        try:
            train(steps=4)
            report["fewer_steps"] = "ran"
        except Exception as exc:  # noqa: BLE001 - reported
            report["fewer_steps"] = f"{type(exc).__name__}: {exc}"
        # 7. More steps continue the finished run; a validation clip at the end.
        more, report["more_text"] = train(steps=8, validation_steps=2)
        report["more_steps"] = more.info["steps"]
    return report


if __name__ == "__main__":
    print("DMT-REPORT " + json.dumps(main(*sys.argv[1:5])))
