"""Per-channel sums over the rows (tokens) of ``N x C`` activations, and the input gradient
of the offline norms, without avoidable temporaries.

Two code paths, chosen per call by :func:`_fused`:

- CPU float32: every reduction goes through ATen's eval-mode batch-norm backward kernel,
  which computes ``dy * w * invstd``, ``sum(dy * (x - mean) * invstd)`` and ``sum(dy)`` in
  one fused pass: with ``mean = 0`` and ``invstd = 1`` it is exactly the sums the offline
  norms need.
- everything else (CUDA, half and bfloat16 anywhere): plain ops in the activations' dtype
  that never form a full-size float32 copy, with float32 accumulation, in the spec's order
  ``dx = (g - c z) * out_scale`` with ``z = x * z_scale`` (spec, "UN" backward step 5), so
  that every half-precision intermediate is of the size of ``z`` (about 1), ``g`` or the
  result: an fp16 backward overflows only where the true gradient does.

A third path, chosen by :data:`kernels` (``--norm-kernels``): the same sums and maps as pure
functions compiled with ``torch.compile`` (``compiled.py``); where compilation is
unavailable the two eager paths above run instead.

Tests run the whole float64-reference suite through every path on CPU by setting
:data:`use_fused_cpu_kernel` to False, or :data:`kernels` to ``"compiled"``.
"""

from typing import Optional

import torch
from torch import Tensor

from . import compiled

_bn_backward = torch.ops.aten.native_batch_norm_backward
_EPS = 1e-5


#: Take the fused CPU float32 kernel where it applies; False forces the plain ops that CUDA
#: and half precision run (tests switch it to run that path on CPU).
use_fused_cpu_kernel = True


#: Where the compiled kernels were measured faster than the eager ones in training: by device
#: type, the smallest activations (elements, ``N * C``) that ``kernels = "auto"`` compiles for;
#: None: never. The measurements that set it (a Multi30k epoch took longer with them on CPU)
#: are in ``docs/normalizers.md``, "Kernels"; ``auto`` stays eager until a device measures
#: them faster.
COMPILED_BY_DEFAULT = {"cpu": None, "cuda": None}

#: Which kernels the batch-statistics norms run: "eager", "compiled", or "auto" (compiled
#: where :data:`COMPILED_BY_DEFAULT` says). Set by ``--norm-kernels``.
kernels = "auto"
KERNEL_CHOICES = ("auto", "eager", "compiled")


def select(mode: str) -> None:
    """Set :data:`kernels` (``--norm-kernels``)."""
    global kernels
    if mode not in KERNEL_CHOICES:
        raise ValueError(f"kernels={mode!r} is not allowed: choose one of {', '.join(KERNEL_CHOICES)}")
    kernels = mode


def _compiled(x: Tensor) -> bool:
    """Take the compiled kernels for activations like ``x``."""
    if kernels == "eager" or compiled.unavailable is not None:
        return False
    if kernels == "compiled":
        return True
    smallest = COMPILED_BY_DEFAULT.get(x.device.type)
    return smallest is not None and x.numel() >= smallest


def _fused(*tensors: Tensor) -> bool:
    return use_fused_cpu_kernel and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def _unit_stats(like: Tensor):
    """``(mean, var)`` making the kernel's ``invstd`` exactly 1 (its eps is ``_EPS``)."""
    C = like.shape[-1]
    return like.new_zeros(C), like.new_full((C,), 1.0 - _EPS)


def sum_of_products(a: Tensor, b: Tensor) -> Tensor:
    """``sum_rows(a * b)`` per channel, float32."""
    if _fused(a, b):
        mean, var = _unit_stats(a)
        return _bn_backward(a, b, None, mean, var, None, None, False, _EPS, [False, True, False])[1]
    return (a.float() * b.float()).sum(0)


def kept(x: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``x`` with padding rows zeroed (``keep`` is ``N x 1``), or ``x`` itself."""
    return x if keep is None else x * keep.to(x.dtype)


def quadratic_mean(x: Tensor, keep: Optional[Tensor], n) -> Tensor:
    """``s = mean over real rows of x^2`` per channel, float32 (spec step 2).

    Off the fused path the squares are accumulated in float32 by ``vector_norm`` (no
    ``x * x`` in half precision, which overflows above 256)."""
    if _compiled(x):
        total = compiled.run("square_sum", x, keep)
        if total is not None:
            return total / n
    if _fused(x):
        return sum_of_products(x, kept(x, keep)) / n
    return torch.linalg.vector_norm(kept(x, keep), dim=0, dtype=torch.float32).square() / n


def scale_shift(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``x * a + b`` in ``x``'s dtype, ``a`` and ``b`` float32 ``(C,)`` (the forward's map)."""
    if _compiled(x):
        y = compiled.run("scale_shift", x, a, b)
        if y is not None:
            return y
    return torch.addcmul(b.to(x.dtype), x, a.to(x.dtype))


class RowGrad:
    """The input gradient ``dx = (g - c * z) * out_scale`` of an offline norm on rows, and the
    sums its statistics need, with ``g = dy * gain``, ``z = x * z_scale`` (0 on padding rows,
    so padding gets no correction).

    ``gain``, ``z_scale``, ``out_scale`` and the later ``c`` are float32 per-channel ``(C,)``;
    ``dy`` and ``x`` are ``N x C`` of one dtype, ``keep`` ``N x 1`` or None. UN and MABN:
    ``gain = gamma * r``, ``z_scale = out_scale = 1 / sqrt(sigma2 + eps)``; PowerNorm:
    ``gain = gamma``, ``z_scale`` its forward divisor, ``out_scale = 1 / sqrt(s + eps)``.

    After construction: ``mean_gz`` (mean over real rows of ``g * z``) and ``sum_dy``; then
    :meth:`dgamma` and :meth:`dx`.
    """

    def __init__(self, dy: Tensor, x: Tensor, keep: Optional[Tensor], n, gain: Tensor,
                 z_scale: Tensor, out_scale: Tensor) -> None:
        self.z_scale, self.out_scale, self.gain = z_scale, out_scale, gain
        self.compiled = _compiled(x) and self._compiled_sums(dy, x, keep, n)
        self.fused = not self.compiled and _fused(dy, x)
        if self.compiled:
            return
        if self.fused:  # dx = dy * a - x * b, as ATen's kernel gives dy * a
            self.xk = kept(x, keep)
            mean, var = _unit_stats(x)
            a = (gain * out_scale).float()
            self._dx, sum_keep, self.sum_dy = _bn_backward(
                dy, self.xk, a, mean, var, None, None, False, _EPS, [True, True, True]
            )
            self._sum_dy_x = sum_keep if keep is None else sum_of_products(dy, x)
            self.mean_gz = gain * z_scale * (sum_keep / n)
            return
        dtype = x.dtype
        z = x * z_scale.to(dtype)  # N x C, about 1 in size
        dyz = dy * z  # the size of dy
        self._sum_dy_z = dyz.sum(0, dtype=torch.float32)
        if keep is None:
            sum_keep = self._sum_dy_z
        else:
            keep = keep.to(dtype)
            sum_keep = dyz.mul_(keep).sum(0, dtype=torch.float32)
            z.mul_(keep)
        del dyz
        self._z, self._dy = z, dy
        self.mean_gz = gain * (sum_keep / n)
        self.sum_dy = dy.sum(0, dtype=torch.float32)

    def _compiled_sums(self, dy: Tensor, x: Tensor, keep: Optional[Tensor], n) -> bool:
        sums = compiled.run("grad_sums", dy, x, keep)
        if sums is None:
            return False
        self.sum_dy, self._sum_dy_x, sum_keep = sums
        self.mean_gz = self.gain * self.z_scale * (sum_keep / n)
        self._dy, self._x, self._keep = dy, x, keep
        return True

    def dgamma(self, r: Optional[Tensor] = None) -> Tensor:
        """``sum over all rows of dy * r * z`` (``r`` None for 1), float32."""
        if self.fused or self.compiled:
            return self.z_scale * self._sum_dy_x if r is None else r * self.z_scale * self._sum_dy_x
        return self._sum_dy_z if r is None else r * self._sum_dy_z

    def dx(self, c: Tensor) -> Tensor:
        """``(g - c * z) * out_scale`` in ``dy``'s dtype; call once."""
        if self.compiled:
            a = self.gain * self.out_scale
            dx = compiled.run("grad_input", self._dy, self._x, self._keep, a, c * self.z_scale * self.out_scale)
            if dx is None:  # compilation failed after the sums: the same map, eager
                dx = compiled.grad_input(self._dy, self._x, self._keep, a, c * self.z_scale * self.out_scale)
            return dx
        if self.fused:
            return self._dx.addcmul_(self.xk, -(c * self.z_scale * self.out_scale))
        dtype = self._z.dtype
        dx = self._z.mul_(-c.to(dtype))  # - c z, in place of z
        dx.addcmul_(self._dy, self.gain.to(dtype))  # g - c z
        return dx.mul_(self.out_scale.to(dtype))
