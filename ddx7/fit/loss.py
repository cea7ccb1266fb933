"""Multi-resolution spectral loss (DDSP / DDX7): linear + log magnitude over six FFT sizes."""

from __future__ import annotations

import torch

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


MIN_POWER = 1e-24
"""Power floor of :func:`magnitude` (a magnitude of 1e-12, far below the log term's ``eps``)."""


def magnitude(audio: torch.Tensor, n_fft: int, overlap: float = 0.75) -> torch.Tensor:
    """|STFT| of (B, N) audio: Hann window, hop ``n_fft * (1 - overlap)``, centred -> (B, bins, frames).

    The power is floored at :data:`MIN_POWER` before the square root: the backward pass of a
    complex ``abs`` at an exactly (or denormally) silent bin gives NaN, which a model whose
    prediction ends in digital silence would otherwise take into its weights.
    """
    hop = max(1, int(n_fft * (1.0 - overlap)))
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.view_as_real(torch.stft(audio, n_fft, hop, window=window, center=True, return_complex=True))
    return spec.pow(2).sum(-1).clamp(min=MIN_POWER).sqrt()


def multiscale_spectral_loss(pred: torch.Tensor, target: torch.Tensor, fft_sizes=FFT_SIZES,
                             log_weight: float = 1.0, eps: float = 1e-7) -> torch.Tensor:
    """Sum over FFT sizes of mean |S - S'| + ``log_weight`` * mean |log S - log S'|.

    Args:
        pred, target: (B, N) audio, same length.

    Returns:
        scalar tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    loss = pred.new_zeros(())
    for n_fft in fft_sizes:
        p, t = magnitude(pred, n_fft), magnitude(target, n_fft)
        loss = loss + (p - t).abs().mean() + log_weight * (torch.log(p + eps) - torch.log(t + eps)).abs().mean()
    return loss
