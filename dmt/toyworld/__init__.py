"""The toy world: procedural clips of coloured shapes on known trajectories, measures from their
pixels, and a tiny ZeroScope-shaped model trained on them, so that the methods' quality can be
measured on a CPU (see dmt/toyworld/model/README.md for the trained model's card)."""

from .card import BUNDLED_MODEL, MODEL_KIND, model_defaults, read_card
from .measure import Track, direction_of, track_object, trajectory_error, velocity_error
from .world import COLOURS, DIRECTIONS, HELD_OUT, SHAPES, SPEEDS, VOCABULARY_MOTIONS, Clip, make_clip

__all__ = ["BUNDLED_MODEL", "MODEL_KIND", "model_defaults", "read_card", "Track", "direction_of", "track_object",
           "trajectory_error", "velocity_error", "COLOURS", "DIRECTIONS", "HELD_OUT", "SHAPES", "SPEEDS",
           "VOCABULARY_MOTIONS", "Clip", "make_clip"]
