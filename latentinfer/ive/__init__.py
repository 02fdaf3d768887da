"""Interpretable variational encoders (beta-VAEs) on CMB spectra: data, model, training, bundles, accuracy.

Pipeline: :mod:`.data` (corpus -> normalised targets) -> :mod:`.train` (beta-VAE) -> :mod:`.physical`
(parameters -> latents) -> :mod:`.basis` (the latents' coordinates: independent components) -> :mod:`.errorcov`
(emulator error) -> :mod:`.accuracy` (plik_lite dchi^2) -> :mod:`.bundle` (``models/<name>/``, architecture
``ive-decoder``). :mod:`.pipeline` chains them for ``latentinfer train``; :mod:`.scan` runs the latent-dimension
scan and the learning curve.
"""

from .bundle import IVEForwardModel, PhysicalForwardModel
from .encode import encode_corpus

__all__ = ["IVEForwardModel", "PhysicalForwardModel", "encode_corpus"]
