"""DMT Motion Transfer — ComfyUI node pack ("Space-Time Diffusion Features for Zero-Shot
Text-Driven Motion Transfer", CVPR 2024, on ZeroScope).

ComfyUI imports this folder as a package and calls `comfy_entrypoint` (V3 extension API; the
pack registers its nodes this one way only). The nodes import the bundled `dmt` library
relatively (`<pack>.dmt`), so nothing is added to sys.path. The import is guarded so that plain
`pytest` from the repository root, which may import this file outside a package, does not break.
"""

if __package__:
    from .nodes import comfy_entrypoint  # noqa: F401

    __all__ = ["comfy_entrypoint"]
