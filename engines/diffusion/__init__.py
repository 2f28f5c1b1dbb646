"""Diffusion sampling shared by the motion network and the diffusion renderer (numpy only)."""

from __future__ import annotations

from .scheduler import PREDICTION_TYPES, DDIMScheduler, PredictionType, cosine_alpha_bar

__all__ = ["PREDICTION_TYPES", "DDIMScheduler", "PredictionType", "cosine_alpha_bar"]
