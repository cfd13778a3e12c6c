"""RoIAlign backed by the compiled op ``torch.ops.person_search.roi_align_forward/backward``.

Same semantics as ``torchvision.ops.roi_align`` (and Detectron2's ``ROIAlign``): boxes are
``[x1, y1, x2, y2]`` in input-image coordinates, scaled by ``spatial_scale``; ``aligned=True``
shifts them by -0.5 pixel (pixel-centre model, Detectron2's "ROIAlignV2"); a bin averages
``sampling_ratio**2`` bilinear samples, or ``ceil(roi_size / output_size)`` per axis when
``sampling_ratio <= 0``. The gradient flows to the features only (not to the boxes).
Supported dtypes: float32 and float64 on CPU; float16, float32, float64 on CUDA.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._ext import ops

__all__ = ["ROIAlign", "roi_align", "boxes_to_rois"]

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float16, torch.float32, torch.float64)


def _pair(output_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    size = tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them, got {output_size}")
    return size


def boxes_to_rois(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """Boxes in RoI format.

    Args:
        boxes: a (K, 5) tensor ``[batch_index, x1, y1, x2, y2]`` (returned as is), or a list
            with one (Ki, 4) tensor ``[x1, y1, x2, y2]`` per image.
    Returns:
        (K, 5) tensor; rows of image i follow those of image i - 1.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                "boxes given as a tensor must have shape (K, 5) [batch_index, x1, y1, x2, y2], "
                f"got {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, Sequence) or len(boxes) == 0:
        raise TypeError("boxes must be a (K, 5) tensor or a non-empty list of (Ki, 4) tensors")
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise ValueError(f"boxes[{i}] must be a (Ki, 4) tensor, got {shape}")
    flat = torch.cat(list(boxes), dim=0)
    sizes = torch.tensor([len(b) for b in boxes], device=flat.device)
    index = torch.repeat_interleave(torch.arange(len(boxes), device=flat.device), sizes)
    return torch.cat([index.to(flat.dtype)[:, None], flat], dim=1)


class _ROIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.save_for_backward(rois)
        ctx.params = (output_size, spatial_scale, sampling_ratio, aligned)
        ctx.input_shape = input.shape
        return ops().roi_align_forward(
            input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        output_size, spatial_scale, sampling_ratio, aligned = ctx.params
        n, c, h, w = ctx.input_shape
        grad_input = ops().roi_align_backward(
            grad_output,
            rois,
            spatial_scale,
            output_size[0],
            output_size[1],
            n,
            c,
            h,
            w,
            sampling_ratio,
            aligned,
        )
        return grad_input, None, None, None, None, None


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (differentiable w.r.t. ``input``).

    Args:
        input: (N, C, H, W) features.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]`` or a list of N (Ki, 4) tensors, in
            image coordinates; converted to ``input``'s dtype (like Detectron2).
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: feature-map scale relative to the image (1 / stride).
        sampling_ratio: samples per bin and axis; <= 0 means ``ceil(roi_size / output_size)``.
        aligned: shift boxes by -0.5 pixel (Detectron2's ROIAlignV2).
    Returns:
        (K, C, PH, PW) pooled features.
    """
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"roi_align: input must be a (N, C, H, W) tensor, got {shape}")
    allowed = _CUDA_DTYPES if input.is_cuda else _CPU_DTYPES
    if input.dtype not in allowed:
        raise TypeError(
            f"roi_align: input dtype {input.dtype} is not supported on {input.device.type} "
            f"(supported: {', '.join(str(d) for d in allowed)})"
        )
    size = _pair(output_size)
    rois = boxes_to_rois(boxes)
    if rois.device != input.device:
        raise ValueError(f"roi_align: boxes are on {rois.device} but input is on {input.device}")
    if not rois.is_floating_point():
        raise TypeError(f"roi_align: boxes must be floating point, got {rois.dtype}")
    rois = rois.to(dtype=input.dtype)
    return _ROIAlignFunction.apply(
        input, rois, size, float(spatial_scale), int(sampling_ratio), bool(aligned)
    )


class ROIAlign(nn.Module):
    """RoIAlign layer (see :func:`roi_align`); ``forward(input, rois) -> (K, C, PH, PW)``."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = True,
    ):
        """
        Args:
            output_size: ``PH`` or ``(PH, PW)``.
            spatial_scale: 1 / stride of the feature map.
            sampling_ratio: samples per bin and axis, <= 0 for adaptive.
            aligned: True for the pixel-centre model (Detectron2's ROIAlignV2).
        """
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: Tensor, rois: Tensor | Sequence[Tensor]) -> Tensor:
        """
        Args:
            input: (N, C, H, W) features.
            rois: (K, 5) ``[batch_index, x1, y1, x2, y2]`` or a list of N (Ki, 4) tensors.
        Returns:
            (K, C, PH, PW).
        """
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
