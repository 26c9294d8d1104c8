"""Independent float64 reference implementations of every normalizer.

Written only from ``docs/normalizers.md`` (the spec); where the spec is silent the
authors' released code is followed and the reading is stated in a comment marked
``DECISION``.  Nothing here uses ``torch.autograd.Function``: every custom backward
is written out explicitly; LayerNorm / RMSNorm / NoNorm / BatchNorm (whose spec is
"full autograd") and PowerNorm's layer-scale use float64 autograd of the formula.

Conventions shared by all classes
---------------------------------
* ``forward(x, padding_mask=None) -> y``: ``x`` of shape ``(T, B, C)`` when a mask
  is given (mask ``(B, T)``, True at padding); any leading shape ``(..., C)`` when
  not.  All arithmetic is float64 whatever the input dtype.
* ``backward(dy) -> (dx, dgamma, dbeta)`` uses the context of the last forward call.
* ``buffers()`` returns the state under the same names as the modules' buffers.
* ``training`` flag (``train()`` / ``eval()``); state changes only in training.
* A training forward whose statistics are not finite changes no state (the step
  counter included) and its backward changes no state either; a backward whose
  gradient statistic is not finite changes no gradient state.
"""

import math

import torch

F64 = torch.float64


def _as_rows(x, padding_mask, count_padding=False):
    """Flatten ``(..., C)`` to rows ``(N, C)`` (float64) and a bool mask of real rows.

    For a ``(T, B, C)`` input ``x.reshape(-1, C)`` orders rows as ``t * B + b``; the
    ``(B, T)`` padding mask is transposed to ``(T, B)`` to get the same order.
    ``count_padding=True`` ignores the mask entirely (the released NMT code passes no
    mask, so padding rows take part in every statistic there).
    """
    x = x.detach().to(F64)
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    if padding_mask is None or count_padding:
        real = torch.ones(rows.shape[0], dtype=torch.bool)
    else:
        assert x.dim() == 3, "a padding mask needs a (T, B, C) input"
        T, B, _ = x.shape
        assert tuple(padding_mask.shape) == (B, T)
        real = (~padding_mask.bool()).transpose(0, 1).reshape(-1)
    return rows, real


class _Ref:
    """Common parameter / mode handling."""

    def __init__(self, num_features):
        self.C = num_features
        self.weight = torch.ones(num_features, dtype=F64)
        self.bias = torch.zeros(num_features, dtype=F64)
        self.training = True
        self._ctx = None

    def set_params(self, weight, bias):
        self.weight = weight.detach().to(F64).clone()
        self.bias = bias.detach().to(F64).clone()

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def buffers(self):
        return {}


# --------------------------------------------------------------------------- UN
class RefUnifiedNorm(_Ref):
    """UN: spec section "UN: Unified Normalization", release semantics.

    DECISIONS (spec silent, release code followed):
    * initial state: running_var = 1, psi = 0, Omega = 0, Phi = 0 (release buffers).
    * window pair (M_f, M_b): Omega has M_f slots, Phi has M_b slots; forward step 6
      uses ``t <= M_f``, backward step 3 uses ``t <= M_b``; ``skip = (M_f == 1)``;
      forward ring slot ``t mod M_f``, backward ring slot ``t mod M_b``.
    * GM of Omega while it still holds its zero initial slots is exp(mean(log 0)) = 0
      (no clamping), as in the release (matters only for the outlier test with W < M_f).
    * the outlier test (step 5) uses the GM of Omega even when fp_geometric_mean is off;
      the ablation changes only step 6.
    * bp_moving_average off changes only step 3 (m = gz); Phi is still written (step 2).
    * bp_momentum off: psi = m (step 4); c = psi = m.
    * on a skip, the Omega slot gets running_var *before* step 9 (release).
    * dgamma / dbeta are sums over *all* positions, padding included (padding outputs are
      gamma * z + beta too, so this is what autograd of the forward gives; the release
      sums over all positions).
    * count_padding=True: the mask is ignored entirely (statistics and dx correction over
      every row), identical to passing no mask.
    * inference backward: plain autograd of the inference affine map
      (dx = dy * gamma / sqrt(running_var + eps), dgamma = sum(dy * z)).
    """

    def __init__(self, num_features, window=4, warmup=4000, momentum=0.9, eps=1e-5,
                 outlier_filtration=False, count_padding=False, fp_geometric_mean=True,
                 bp_moving_average=True, bp_momentum=True):
        super().__init__(num_features)
        if isinstance(window, int):
            self.Mf, self.Mb = window, window
        else:
            self.Mf, self.Mb = int(window[0]), int(window[1])
        self.W = warmup
        self.alpha = momentum
        self.eps = eps
        self.outlier_filtration = outlier_filtration
        self.count_padding = count_padding
        self.fp_geometric_mean = fp_geometric_mean
        self.bp_moving_average = bp_moving_average
        self.bp_momentum = bp_momentum
        C = num_features
        self.running_var = torch.ones(C, dtype=F64)
        self.psi = torch.zeros(C, dtype=F64)
        self.omega = torch.zeros(self.Mf, C, dtype=F64)
        self.phi = torch.zeros(self.Mb, C, dtype=F64)
        self.num_steps = 0
        self.num_skips = 0
        self.log = []  # one dict per finite training forward: t, skip, r, sigma2, s

    def buffers(self):
        return {
            "running_var": self.running_var, "psi": self.psi, "omega": self.omega,
            "phi": self.phi, "num_steps": torch.tensor(self.num_steps),
            "num_skips": torch.tensor(self.num_skips),
        }

    @staticmethod
    def _gm(omega):
        return torch.exp(torch.log(omega).mean(0))

    def forward(self, x, padding_mask=None):
        shape = x.shape
        rows, real = _as_rows(x, padding_mask, self.count_padding)
        gamma, beta, eps = self.weight, self.bias, self.eps

        if not self.training:
            z = rows / torch.sqrt(self.running_var + eps)
            self._ctx = dict(kind="eval", z=z, scale=1.0 / torch.sqrt(self.running_var + eps))
            return (gamma * z + beta).reshape(shape)

        # step 2: quadratic mean over real rows
        s = (rows[real] ** 2).mean(0)
        if not torch.isfinite(s).all():
            # non-finite batch: no state change at all; the output is non-finite.
            z = rows / torch.sqrt(s + eps)
            self._ctx = dict(kind="bad")
            return (gamma * z + beta).reshape(shape)

        # step 1
        self.num_steps += 1
        t = self.num_steps
        Mf, W, alpha = self.Mf, self.W, self.alpha
        # step 3: one scalar, unbiased variance of sqrt(Omega) over all M_f*C entries,
        # taken before Omega is written.
        v = torch.sqrt(self.omega).flatten().var(unbiased=True)
        # step 4
        slot = t % Mf
        self.omega[slot] = s
        # step 5
        skip = Mf == 1
        if self.outlier_filtration and t >= W:
            am = self.omega.mean(0)
            gm = self._gm(self.omega)
            if bool(((am - gm) > Mf * v).any()):
                self.omega[slot] = self.running_var.clone()
                skip = True
                self.num_skips += 1
        # step 6
        if (not self.fp_geometric_mean) or t <= Mf or t < W or skip:
            sigma2 = s.clone()
        else:
            sigma2 = self._gm(self.omega)
        # step 7 (running_var before step 9)
        if t <= max(1000, W) or skip:
            r = torch.ones_like(sigma2)
        else:
            r = (torch.sqrt(sigma2 + eps) / torch.sqrt(self.running_var + eps)).clamp(0.2, 5.0)
        # step 8
        z = rows / torch.sqrt(sigma2 + eps)
        y = gamma * z + beta
        # step 9
        self.running_var = alpha * self.running_var + (1 - alpha) * sigma2

        self.log.append(dict(t=t, skip=skip, r=r.clone(), sigma2=sigma2.clone(), s=s.clone()))
        self._ctx = dict(kind="train", t=t, z=z, r=r, sigma2=sigma2, skip=skip, real=real)
        return y.reshape(shape)

    def backward(self, dy):
        ctx = self._ctx
        dy = dy.detach().to(F64).reshape(-1, self.C)
        gamma, eps, alpha = self.weight, self.eps, self.alpha
        if ctx["kind"] == "eval":
            return ((dy * gamma * ctx["scale"]), (dy * ctx["z"]).sum(0), dy.sum(0))
        if ctx["kind"] == "bad":
            nan = torch.full_like(dy, float("nan"))
            return nan, nan[0], dy.sum(0)
        t, z, r, sigma2, skip, real = (ctx[k] for k in ("t", "z", "r", "sigma2", "skip", "real"))
        Mb, W = self.Mb, self.W
        # step 1
        g = dy * gamma * r
        gz = (g * z)[real].mean(0)
        if torch.isfinite(gz).all():
            psi_old = self.psi.clone()
            # step 2
            self.phi[t % Mb] = psi_old if skip else gz
            # step 3
            if (not self.bp_moving_average) or t <= Mb or t < W or skip:
                m = gz
            else:
                m = self.phi.mean(0)
            # step 4
            if self.bp_momentum:
                self.psi = alpha * psi_old + (1 - alpha) * m
            else:
                self.psi = m.clone()
            # step 5
            c = m if skip else self.psi
        else:
            # non-finite upstream gradient (fp16 overflow): no gradient state change
            c = gz
        dx = (g - c * z) / torch.sqrt(sigma2 + eps)
        # padding rows: no statistics correction
        dx[~real] = g[~real] / torch.sqrt(sigma2 + eps)
        # step 6
        dgamma = (dy * r * z).sum(0)
        dbeta = dy.sum(0)
        return dx, dgamma, dbeta


# --------------------------------------------------------------------------- PN
def group_scale(x, num_groups, eps=1e-5):
    """GroupScaling1D: per token, per group of C/G *contiguous* channels (release layout),
    x / sqrt(mean_group x^2 + 1e-5)."""
    C = x.shape[-1]
    G = num_groups
    xg = x.reshape(*x.shape[:-1], G, C // G)
    m2 = (xg * xg).mean(-1, keepdim=True)
    return (xg / torch.sqrt(m2 + eps)).reshape(x.shape)


class RefPowerNorm(_Ref):
    """PN (layer_scale=True) and PN* (layer_scale=False), spec sections PN / PN*.

    DECISIONS:
    * GroupScaling groups are contiguous blocks of C/G channels (release layout); it is
      applied to every token, padding included (per-token op), eps fixed at 1e-5.
    * Gamma (grad_ema) update ``mean(gh * z)`` is over real rows only (spec: rows are the
      non-padding tokens); padding rows get ``dx = g / sqrt(s_t + eps)`` (no correction,
      by analogy with UN's padding rule; the release corrects every position).  The tests
      compare dx only at real rows for PN, because the spec does not fix padding rows.
    * dgamma = sum(dy * z), dbeta = sum(dy) over all positions (release).
    * the backward divides by sqrt(s_t + eps) even after warmup, when the forward used phi
      (spec step 5 and release).
    * inference backward: plain autograd of the inference map (through GS too).
    """

    def __init__(self, num_features, num_groups=4, warmup=4000, alpha_fwd=0.9,
                 alpha_bkw=0.9, eps=1e-5, layer_scale=True, count_padding=False):
        super().__init__(num_features)
        self.G = num_groups
        self.W = warmup
        self.af = alpha_fwd
        self.ab = alpha_bkw
        self.eps = eps
        self.layer_scale = layer_scale
        self.count_padding = count_padding
        self.running_phi = torch.ones(num_features, dtype=F64)
        self.grad_ema = torch.zeros(num_features, dtype=F64)
        self.num_steps = 0

    def buffers(self):
        return {"running_phi": self.running_phi, "grad_ema": self.grad_ema,
                "num_steps": torch.tensor(self.num_steps)}

    def forward(self, x, padding_mask=None):
        shape = x.shape
        xin = x.detach().to(F64).clone().requires_grad_(True)
        with torch.enable_grad():
            h = group_scale(xin, self.G) if self.layer_scale else xin * 1.0
        hd = h.detach()
        rows, real = _as_rows(hd, padding_mask, self.count_padding)
        gamma, beta, eps = self.weight, self.bias, self.eps

        if not self.training:
            z = rows / torch.sqrt(self.running_phi + eps)
            self._ctx = dict(kind="eval", xin=xin, h=h, z=z,
                             scale=1.0 / torch.sqrt(self.running_phi + eps))
            return (gamma * z + beta).reshape(shape)

        # step 2
        s = (rows[real] ** 2).mean(0)
        if not torch.isfinite(s).all():
            self._ctx = dict(kind="bad")
            return (gamma * rows / torch.sqrt(s + eps) + beta).reshape(shape)
        self.num_steps += 1
        t = self.num_steps
        # step 3 (phi before its update)
        if t <= self.W:
            z = rows / torch.sqrt(s + eps)
        else:
            z = rows / torch.sqrt(self.running_phi + eps)
        y = gamma * z + beta
        # step 4
        if t < self.W:
            self.running_phi = self.running_phi * (t - 1) / t + s / t
        self.running_phi = self.af * self.running_phi + (1 - self.af) * s
        self._ctx = dict(kind="train", xin=xin, h=h, z=z, s=s, real=real)
        return y.reshape(shape)

    def _through_gs(self, ctx, dh, shape):
        dh = dh.reshape(shape)
        (dx,) = torch.autograd.grad(ctx["h"], ctx["xin"], dh)
        return dx

    def backward(self, dy):
        ctx = self._ctx
        shape = dy.shape
        dy = dy.detach().to(F64).reshape(-1, self.C)
        gamma, eps = self.weight, self.eps
        if ctx["kind"] == "bad":
            nan = torch.full_like(dy, float("nan"))
            return nan.reshape(shape), nan[0], dy.sum(0)
        if ctx["kind"] == "eval":
            dh = dy * gamma * ctx["scale"]
            return self._through_gs(ctx, dh, shape), (dy * ctx["z"]).sum(0), dy.sum(0)
        z, s, real = ctx["z"], ctx["s"], ctx["real"]
        # step 5
        g = dy * gamma
        nu = (1 - self.ab) * self.grad_ema
        gh = g - nu * z
        gh[~real] = g[~real]
        upd = (gh * z)[real].mean(0)
        if torch.isfinite(upd).all():
            self.grad_ema = self.grad_ema + upd
        dh = gh / torch.sqrt(s + eps)
        dx = self._through_gs(ctx, dh, shape)
        return dx, (dy * z).sum(0), dy.sum(0)


# ------------------------------------------------------------------------- MABN
class RefMABN(_Ref):
    """MABN, spec section MABN.

    DECISIONS:
    * initial state: running_var = 1, Omega = Phi = 0 (release); ring slot ``t mod M``.
    * "psi = gz during warmup" reads as the forward's condition ``t <= M or t < W``.
    * padding rows: excluded from s_t and gz; dx there = g / sqrt(sigma2 + eps) (UN rule;
      the tests compare dx only at real rows for MABN).
    * dgamma = sum(dy * r * z), dbeta = sum(dy) over all positions.
    * inference: y = gamma * x / sqrt(running_var + eps) + beta ("as UN", no r).
    """

    def __init__(self, num_features, window=16, warmup=100, momentum=0.98, eps=1e-5,
                 count_padding=False):
        super().__init__(num_features)
        self.M = window
        self.W = warmup
        self.momentum = momentum
        self.eps = eps
        self.count_padding = count_padding
        self.running_var = torch.ones(num_features, dtype=F64)
        self.omega = torch.zeros(window, num_features, dtype=F64)
        self.phi = torch.zeros(window, num_features, dtype=F64)
        self.num_steps = 0
        self.log = []

    def buffers(self):
        return {"running_var": self.running_var, "omega": self.omega, "phi": self.phi,
                "num_steps": torch.tensor(self.num_steps)}

    def forward(self, x, padding_mask=None):
        shape = x.shape
        rows, real = _as_rows(x, padding_mask, self.count_padding)
        gamma, beta, eps = self.weight, self.bias, self.eps
        if not self.training:
            z = rows / torch.sqrt(self.running_var + eps)
            self._ctx = dict(kind="eval", z=z, scale=1.0 / torch.sqrt(self.running_var + eps))
            return (gamma * z + beta).reshape(shape)
        s = (rows[real] ** 2).mean(0)
        if not torch.isfinite(s).all():
            self._ctx = dict(kind="bad")
            return (gamma * rows / torch.sqrt(s + eps) + beta).reshape(shape)
        self.num_steps += 1
        t = self.num_steps
        self.omega[t % self.M] = s
        warm = t <= self.M or t < self.W
        sigma2 = s.clone() if warm else self.omega.mean(0)
        z = rows / torch.sqrt(sigma2 + eps)
        if t <= max(1000, self.W):
            r = torch.ones_like(sigma2)
        else:
            r = (torch.sqrt(sigma2 + eps) / torch.sqrt(self.running_var + eps)).clamp(0.2, 5.0)
        y = gamma * (r * z) + beta
        self.running_var = self.momentum * self.running_var + (1 - self.momentum) * sigma2
        self.log.append(dict(t=t, r=r.clone()))
        self._ctx = dict(kind="train", t=t, z=z, r=r, sigma2=sigma2, warm=warm, real=real)
        return y.reshape(shape)

    def backward(self, dy):
        ctx = self._ctx
        dy = dy.detach().to(F64).reshape(-1, self.C)
        gamma, eps = self.weight, self.eps
        if ctx["kind"] == "eval":
            return dy * gamma * ctx["scale"], (dy * ctx["z"]).sum(0), dy.sum(0)
        if ctx["kind"] == "bad":
            nan = torch.full_like(dy, float("nan"))
            return nan, nan[0], dy.sum(0)
        t, z, r, sigma2, warm, real = (ctx[k] for k in ("t", "z", "r", "sigma2", "warm", "real"))
        g = dy * gamma * r
        gz = (g * z)[real].mean(0)
        if torch.isfinite(gz).all():
            self.phi[t % self.M] = gz
            psi = gz if warm else self.phi.mean(0)
        else:
            psi = gz
        dx = (g - psi * z) / torch.sqrt(sigma2 + eps)
        dx[~real] = g[~real] / torch.sqrt(sigma2 + eps)
        return dx, (dy * r * z).sum(0), dy.sum(0)


# --------------------------------------------------------------------------- BN
class RefMaskedBatchNorm(_Ref):
    """BN over real tokens, full float64 autograd through the statistics.

    DECISIONS / assumptions (PyTorch convention, as torch.nn.BatchNorm1d):
    * normalisation uses the biased variance; running_var is updated with the unbiased
      one (n / (n - 1), n = number of real rows); running_mean/var init 0/1;
      ``running = (1 - momentum) * running + momentum * batch``; num_batches_tracked += 1.
    * padding rows are normalised with the batch statistics; since "full autograd" is the
      spec (and the release), their dy also flows into the statistics.
    * a non-finite batch changes no buffer (num_batches_tracked included).
    """

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__(num_features)
        self.momentum = momentum
        self.eps = eps
        self.running_mean = torch.zeros(num_features, dtype=F64)
        self.running_var = torch.ones(num_features, dtype=F64)
        self.num_batches_tracked = 0

    def buffers(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": torch.tensor(self.num_batches_tracked)}

    def forward(self, x, padding_mask=None):
        shape = x.shape
        rows, real = _as_rows(x, padding_mask)
        xin = rows.clone().requires_grad_(True)
        gamma = self.weight.clone().requires_grad_(True)
        beta = self.bias.clone().requires_grad_(True)
        with torch.enable_grad():
            if self.training:
                xr = xin[real]
                mean = xr.mean(0)
                var = ((xr - mean) ** 2).mean(0)
                y = gamma * (xin - mean) / torch.sqrt(var + self.eps) + beta
                n = int(real.sum())
                if torch.isfinite(mean).all() and torch.isfinite(var).all():
                    m = self.momentum
                    self.running_mean = (1 - m) * self.running_mean + m * mean.detach()
                    self.running_var = (1 - m) * self.running_var + m * var.detach() * n / (n - 1)
                    self.num_batches_tracked += 1
            else:
                y = gamma * (xin - self.running_mean) / torch.sqrt(self.running_var + self.eps) + beta
        self._ctx = dict(y=y, inputs=(xin, gamma, beta))
        return y.detach().reshape(shape)

    def backward(self, dy):
        ctx = self._ctx
        dy = dy.detach().to(F64).reshape(-1, self.C)
        return torch.autograd.grad(ctx["y"], ctx["inputs"], dy)


# ------------------------------------------------------------------ online norms
class _RefAutograd(_Ref):
    """Stateless per-token norms: float64 autograd of the formula ``_f``."""

    def forward(self, x, padding_mask=None):
        xin = x.detach().to(F64).clone().requires_grad_(True)
        gamma = self.weight.clone().requires_grad_(True)
        beta = self.bias.clone().requires_grad_(True)
        with torch.enable_grad():
            y = self._f(xin, gamma, beta)
        self._ctx = dict(y=y, inputs=(xin, gamma, beta))
        return y.detach()

    def backward(self, dy):
        return torch.autograd.grad(self._ctx["y"], self._ctx["inputs"], dy.detach().to(F64),
                                   allow_unused=True)


class RefLayerNorm(_RefAutograd):
    """fairseq LayerNorm = torch.nn.LayerNorm: biased variance over C, eps inside sqrt."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__(num_features)
        self.eps = eps

    def _f(self, x, gamma, beta):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return gamma * (x - mean) / torch.sqrt(var + self.eps) + beta


class RefRMSNorm(_RefAutograd):
    """RMSNorm: gamma * x / sqrt(mean_c x^2 + eps), no beta (the spec's formula)."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__(num_features)
        self.eps = eps

    def _f(self, x, gamma, beta):
        return gamma * x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps)


class RefNoNorm(_Ref):
    """Identity; no parameters."""

    def forward(self, x, padding_mask=None):
        return x.detach().to(F64).clone()

    def backward(self, dy):
        return dy.detach().to(F64).clone(), None, None


# ------------------------------------------------------- elementwise: DyT, Derf
class RefDyT(_Ref):
    """DyT (spec section "DyT"): ``y = weight * tanh(alpha * x) + bias``, alpha one scalar.

    The backward is written out from d tanh(u)/du = 1 - tanh(u)^2 (no autograd):
    ``dx = dy * weight * alpha * (1 - t^2)``, ``dalpha = sum dy * weight * x * (1 - t^2)``,
    ``dweight = sum dy * t``, ``dbias = sum dy`` with ``t = tanh(alpha * x)``, sums over
    every position (padding included: the spec gives DyT no mask).
    ``affine=False``: the folded form, ``tanh(alpha * x)`` alone.
    """

    def __init__(self, num_features, alpha_init_value=0.5, affine=True):
        super().__init__(num_features)
        self.alpha = torch.tensor(float(alpha_init_value), dtype=F64)
        self.affine = affine

    def set_scalars(self, alpha):
        self.alpha = torch.tensor(float(alpha), dtype=F64)

    def _inner(self, x):
        """``(f(x), f'(u) at u = alpha * x (+ shift))``."""
        t = torch.tanh(self.alpha * x)
        return t, 1.0 - t * t

    def forward(self, x, padding_mask=None):
        x = x.detach().to(F64)
        f, df = self._inner(x)
        self._ctx = dict(x=x, f=f, df=df)
        if not self.affine:
            return f.clone()
        return self.weight * f + self.bias

    def backward(self, dy):
        """``(dx, dweight, dbias, dscalars)``; dscalars ``{"alpha": ..., ("shift": ...)}``."""
        ctx = self._ctx
        dy = dy.detach().to(F64)
        w = self.weight if self.affine else torch.ones_like(self.weight)
        g = dy * w * ctx["df"]  # dL/du, u = alpha * x (+ shift)
        lead = tuple(range(dy.dim() - 1))
        dscalars = {"alpha": (g * ctx["x"]).sum()}
        if hasattr(self, "shift"):
            dscalars["shift"] = g.sum()
        dw = (dy * ctx["f"]).sum(lead) if self.affine else None
        db = dy.sum(lead) if self.affine else None
        return g * self.alpha, dw, db, dscalars


class RefDerf(RefDyT):
    """Derf (spec section "Derf"): ``y = weight * erf(alpha * x + shift) + bias``, alpha and
    shift one scalar each; the backward from d erf(u)/du = 2 / sqrt(pi) * exp(-u^2):
    as DyT's with that derivative, and ``dshift = sum dy * weight * erf'(u)``."""

    def __init__(self, num_features, alpha_init_value=0.5, shift_init_value=0.0, affine=True):
        super().__init__(num_features, alpha_init_value, affine)
        self.shift = torch.tensor(float(shift_init_value), dtype=F64)

    def set_scalars(self, alpha, shift=0.0):
        super().set_scalars(alpha)
        self.shift = torch.tensor(float(shift), dtype=F64)

    def _inner(self, x):
        u = self.alpha * x + self.shift
        return torch.erf(u), 2.0 / math.sqrt(math.pi) * torch.exp(-u * u)


# ----------------------------------------------------- small self-check helpers
def exact_rms_batch_norm(x, gamma, beta, eps=1e-5):
    """Float64 autograd formula gamma * x / sqrt(mean_rows x^2 + eps) + beta (rows=all)."""
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    s = (rows * rows).mean(0)
    return (gamma * rows / torch.sqrt(s + eps) + beta).reshape(x.shape)


__all__ = [
    "RefUnifiedNorm", "RefPowerNorm", "RefMABN", "RefMaskedBatchNorm", "RefLayerNorm",
    "RefRMSNorm", "RefNoNorm", "RefDyT", "RefDerf", "group_scale", "exact_rms_batch_norm",
]
