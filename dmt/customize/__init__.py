"""Motion customization ("Customizing Motion in Text-to-Video Diffusion Models", Materzyńska et
al., 2023; later "NewMove") on ZeroScope: teach the model a motion from a few example clips, bound
to a token, then generate it for any subject. No ComfyUI import.

Stages:
    load_examples / example_from_frames → encode_examples (disk cache) → [load_regularization +
    encode_examples | generate_regularization] → train_motion → save_motion / load_motion →
    apply_motions (context manager) → generate_video.
Modules: examples, encode, regularization, trainable, timesteps, train, train_state, motion_file,
apply, generate, loss_curve, atomic.
"""

from .apply import MAX_STRENGTH, apply_motions, check_strength, normalize_motions, touched_parameters
from .encode import EncodedExample, encode_example, encode_examples
from .examples import (DEFAULT_TOKEN, MotionExample, caption_has_token, example_from_frames, load_examples,
                       strip_token)
from .generate import GenerateResult, GenerateSettings, generate_video, sample_latents
from .loss_curve import draw_loss_curve
from .motion_file import Motion, MotionFileError, load_motion, read_motion_header, save_motion
from .regularization import generate_regularization, load_regularization
from .timesteps import TIMESTEP_MODES, sample_timesteps, timestep_density
from .train import DEFAULT_LR, TrainResult, TrainSettings, train_motion
from .trainable import (MODES, lora_target_names, trainable, trainable_modules, trainable_parameter_names)

import types as _types

__all__ = [n for n, v in dict(globals()).items() if not n.startswith("_") and not isinstance(v, _types.ModuleType)]
