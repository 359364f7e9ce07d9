"""Every private torch interface enet_ros relies on, each behind one function here, with
a version check and a fallback: a torch outside the versions they were checked on takes
the public (or slower) path instead of failing somewhere deep.

- ``torch.ops.mkldnn._is_mkldnn_bf16_supported``: whether oneDNN runs bf16 natively;
- ``nn.Conv2d._conv_forward`` (``conv_forward``): a convolution with another bias (the
  adapted statistics);
- ``torch._inductor.aoti_compile_and_package`` / ``aoti_load_package``: AOTInductor;
- AOTInductor's C interface (``AOTInductorModelContainer*``), called through ctypes by
  ``aoti_cache.Package`` so the compiled network runs without Python's global lock, and
  ``torch._C._aoti``'s tensor handles it passes (``tensor_handles``, ``handle_tensors``).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

CHECKED = ((2, 11), (2, 14))  # torch releases (major, minor) these were checked on, inclusive


def checked_version(version: str = torch.__version__) -> bool:
    """Whether ``version`` lies in ``CHECKED``."""
    try:
        major, minor = (int(v) for v in version.split('+')[0].split('.')[:2])
    except ValueError:
        return False
    return CHECKED[0] <= (major, minor) <= CHECKED[1]


def mkldnn_bf16_supported() -> bool:
    """oneDNN's own answer where it can be had; False (fp32, always correct) otherwise."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def conv_forward(layer: nn.Conv2d, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to ``x`` with ``bias`` in place of its own."""
    if checked_version() and hasattr(layer, '_conv_forward'):
        return layer._conv_forward(x, layer.weight, bias)  # padding modes included
    if layer.padding_mode != 'zeros':
        raise NotImplementedError(f'padding mode {layer.padding_mode} on torch '
                                  f'{torch.__version__}')
    return F.conv2d(x, layer.weight, bias, layer.stride, layer.padding, layer.dilation,
                    layer.groups)


def aoti_compile_and_package(program, package_path: str, inductor_configs: dict) -> None:
    torch._inductor.aoti_compile_and_package(program, package_path=package_path,
                                             inductor_configs=inductor_configs)


def aoti_c_interface() -> bool:
    """Whether to call a package's shared library through AOTInductor's C interface (a
    checked torch), rather than torch's own loader, which holds Python's global lock."""
    return checked_version()


def aoti_load_package(path: str):
    """torch's own loader: the fallback where the C interface is not used."""
    return torch._inductor.aoti_load_package(path)


def tensor_handles(tensors: list[torch.Tensor]) -> list:
    """New AOTInductor tensor handles (capsules) of ``tensors``, for the C interface."""
    return torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(tensors)


def handle_tensors(capsules: list) -> list[torch.Tensor]:
    """Tensors that take over the AOTInductor tensor handles in ``capsules``."""
    return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(capsules)
