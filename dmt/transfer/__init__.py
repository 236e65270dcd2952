"""Zero-shot motion transfer (Yatim et al., CVPR 2024): DDIM schedule and steps, inversion,
feature hooks, SMM targets and loss, low-frequency noise init, the guided sampler, presets, the
whole pipeline and inversion files.

Note: `dmt.transfer` the *function* (the whole pipeline, from `dmt/__init__.py`) shadows this
package as an attribute of `dmt`; import its modules with `from dmt.transfer.sampler import ...`
or `from dmt.transfer import sampler`, not `import dmt.transfer.sampler as ...`."""
