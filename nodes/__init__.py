"""ComfyUI adapters for the dmt library (V3 node schema). Imported only by ComfyUI."""

from __future__ import annotations

import importlib.util

from comfy_api.latest import ComfyExtension, io

from .dmt_nodes import NODES
from .example_inputs import install_example_inputs


def node_list() -> list[type[io.ComfyNode]]:
    nodes = list(NODES)
    from .context_nodes import DMTContextOptions

    nodes.append(DMTContextOptions)
    # The motion-fidelity node lives in its own module (written separately); register it when present.
    if importlib.util.find_spec(f"{__name__}.motion_fidelity_node") is not None:
        from .motion_fidelity_node import DMTMotionFidelity

        nodes.append(DMTMotionFidelity)
    from .customize_nodes import NODES as CUSTOMIZE_NODES  # motion customization (issue 14)

    nodes.extend(CUSTOMIZE_NODES)
    from .wan_nodes import NODES as WAN_NODES  # Wan 2.1 as the second base model (issue 20)

    nodes.extend(WAN_NODES)
    from .positions_nodes import NODES as POSITION_NODES  # Wan's positional offsets (DiTFlow's zero-shot mode)

    nodes.extend(POSITION_NODES)
    return nodes


class DMTExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()


async def comfy_entrypoint() -> DMTExtension:
    install_example_inputs()  # the example workflows' clip, into input/ when absent
    return DMTExtension()
