"""LaTeX labels of parameter names, shared by plots, reports and GetDist exports.

Physical parameters use the names of the CAMB corpus (``ombh2, omch2, H0, logA, ns, tau, fde_zc, log10_zc,
theta_i``) and the cobaya/GetDist labels for them; latents ``z3`` become ``z_{3}``; other names with an
underscore become a subscript.

>>> latex("omch2"), latex("z3"), latex("A_planck")
('\\\\Omega_\\\\mathrm{c} h^2', 'z_{3}', 'A_\\\\mathrm{planck}')
"""

from __future__ import annotations

import re

__all__ = ["latex", "LATEX"]

#: Labels (without $) of the parameters whose names the engine knows.
LATEX: dict[str, str] = {
    "ombh2": r"\Omega_\mathrm{b} h^2",
    "omch2": r"\Omega_\mathrm{c} h^2",
    "H0": r"H_0",
    "logA": r"\ln(10^{10} A_\mathrm{s})",
    "ns": r"n_\mathrm{s}",
    "tau": r"\tau_\mathrm{reio}",
    "theta_star": r"100\theta_*",
    "fde_zc": r"f_\mathrm{EDE}(z_c)",
    "log10_zc": r"\log_{10} z_c",
    "theta_i": r"\theta_i",
    "A_planck": r"A_\mathrm{planck}",
    "Tcal": r"T_\mathrm{cal}",
    "Ecal": r"E_\mathrm{cal}",
}


def latex(name: str) -> str:
    """A LaTeX label (without surrounding ``$``) for parameter ``name``."""
    if name in LATEX:
        return LATEX[name]
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    if "_" in name:
        head, tail = name.split("_", 1)
        return f"{head}_\\mathrm{{{tail.replace('_', ' ')}}}"
    return name
