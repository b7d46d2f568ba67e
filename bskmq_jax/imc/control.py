"""Model-wide control of IMC layers: mode, calibration statistics, levels, chips.

Layers are addressed by stable dotted names, the NNX attribute path of the
IMC layer (``"layer1.0.conv2"``, ``"transformer.layer.3.ffn.lin1"``).
"""

from __future__ import annotations

import jax
from flax import nnx

from bskmq_jax.imc.layers import NLADCActivation, QuantMode, _IMCLayer
from bskmq_jax.levels import NLLevels
from bskmq_jax.stats import CalibrationStats, init_stats

__all__ = ["imc_layers", "set_mode", "get_mode", "collect_stats", "reset_stats", "load_levels", "get_levels", "set_chip"]


def _name(path) -> str:
    return ".".join(str(p) for p in path)


def imc_layers(model: nnx.Module) -> dict[str, _IMCLayer]:
    """Every IMC layer of ``model`` by dotted name, in graph order."""
    return {_name(path): m for path, m in nnx.iter_modules(model) if isinstance(m, _IMCLayer)}


def _adcs(model) -> dict[str, NLADCActivation]:
    """Every NL-ADC by its layer's name (a bare `NLADCActivation` keeps its own path)."""
    out = {name: layer.adc for name, layer in imc_layers(model).items()}
    owned = {id(a) for a in out.values()}
    for path, m in nnx.iter_modules(model):
        if isinstance(m, NLADCActivation) and id(m) not in owned:
            out[_name(path)] = m
    return out


def set_mode(model: nnx.Module, mode: QuantMode | str) -> None:
    """Switches every IMC layer of ``model`` to ``mode``.

    Raises:
      ValueError: on an unknown mode, a model without IMC layers, or
        ``QUANTIZED`` while some quantized layers have no fitted levels.
    """
    try:
        mode = QuantMode(mode) if not isinstance(mode, QuantMode) else mode
    except ValueError:
        raise ValueError(f"mode: unknown mode {mode!r}; choose one of {[m.value for m in QuantMode]}") from None
    adcs = _adcs(model)
    if not adcs:
        raise ValueError("model: has no IMC layers (IMCDense, IMCConv or NLADCActivation)")
    if mode is QuantMode.QUANTIZED:
        layers = imc_layers(model)
        missing = [
            n for n, a in adcs.items()
            if not a.fitted and (n not in layers or (layers[n].quant is not None and layers[n].quant.mode == "fused"))
        ]
        if missing:
            raise ValueError(f"levels: no fitted NL-ADC levels for {missing}; load them with load_levels() first")
    for a in adcs.values():
        a.mode = mode


def get_mode(model: nnx.Module) -> QuantMode:
    """The mode of the model's IMC layers (they share one)."""
    modes = {a.mode for a in _adcs(model).values()}
    if len(modes) != 1:
        raise ValueError(f"model: IMC layers are in mixed modes {sorted(m.value for m in modes)}; call set_mode()")
    return modes.pop()


def collect_stats(model: nnx.Module) -> dict[str, CalibrationStats]:
    """Calibration statistics of every layer that has seen data, by dotted name."""
    out = {}
    for name, a in _adcs(model).items():
        st = a.stats.get_value()
        if float(st.count[0]) > 0:
            out[name] = st
    return out


def reset_stats(model: nnx.Module) -> None:
    """Empties every layer's statistics (the next calibration batch sets new ranges)."""
    for a in _adcs(model).values():
        st = a.stats.get_value()
        a.stats.set_value(init_stats(0.0, 1.0, bins=st.bins, boundary_tol=st.boundary_tol))


def load_levels(model: nnx.Module, levels: dict[str, NLLevels]) -> None:
    """Programs fitted levels into the named layers.

    Raises:
      ValueError: on names the model does not have (listing the known ones)
        or levels of the wrong bit width.
    """
    adcs = _adcs(model)
    unknown = sorted(set(levels) - set(adcs))
    if unknown:
        raise ValueError(f"levels: unknown layer name(s) {unknown}; the model's IMC layers are {list(adcs)}")
    for name, nl in levels.items():
        try:
            adcs[name].set_levels(nl)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


def get_levels(model: nnx.Module) -> dict[str, NLLevels]:
    """The levels programmed in every layer, by dotted name."""
    return {name: a.nl_levels() for name, a in _adcs(model).items() if a.fitted}


def set_chip(model: nnx.Module, chip_key) -> None:
    """Places the model on one chip: layer ``i`` gets ``fold_in(chip_key, i)``.

    A Monte-Carlo over chips calls this with different keys (or vmaps a
    function that does).
    """
    for i, a in enumerate(_adcs(model).values()):
        a.chip_key[...] = jax.random.key_data(jax.random.fold_in(chip_key, i))
