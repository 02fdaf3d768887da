"""Interpretable variational encoders (beta-VAEs) on CMB spectra: data, model, training, bundles, accuracy.

Pipeline: :mod:`.data` (corpus -> normalised targets) -> :mod:`.train` (beta-VAE) -> :mod:`.physical`
(parameters -> latents) -> :mod:`.basis` (the latents' coordinates: independent components) -> :mod:`.errorcov`
(emulator error) -> :mod:`.accuracy` (plik_lite dchi^2) -> written through :mod:`latentinfer.bundle.ive`
(``models/<name>/``, architecture ``ive-decoder``; the runtime half, which imports nothing from here). :mod:`.pipeline` chains them for ``latentinfer train``; :mod:`.scan` runs the latent-dimension
scan and the learning curve.
"""

from ..bundle.ive import IVEForwardModel, PhysicalForwardModel  # runtime, re-exported
from .encode import encode_corpus

__all__ = ["IVEForwardModel", "PhysicalForwardModel", "encode_corpus"]
