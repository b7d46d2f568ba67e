"""Config of the crossbar (in-memory computing) simulation."""

from __future__ import annotations

import dataclasses

from bskmq_jax.adc.config import ADCConfig, STEConfig

MODES = ("fused", "partial_sum")


def _check_int(name: str, v, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name}: {v!r} must be an int in {lo}..{hi}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class IMCConfig:
    """How a layer's matrix product runs on crossbar arrays. "6/2/3b" = in/w/adc bits.

    In ``fused`` mode (the seed's scheme) the analog column sums of all tiles
    are combined and the whole pre-activation is converted once by the NL-ADC,
    which also applies ReLU/clamp. In ``partial_sum`` mode every tile's column
    sum (per input bit and weight slice) is converted by its own ADC, linear
    over the array's full scale unless NL levels are given, and the codes are
    shift-added and summed digitally.
    """

    in_bits: int = 8  # input DAC resolution in bits (bit-parallel levels, or bits applied serially)
    w_bits: int = 8  # weight resolution in bits, symmetric per output channel (1: binary sign * mean|w|)
    adc_bits: int = 4  # ADC resolution in bits: the NL-ADC (fused) or each partial-sum ADC (partial_sum)
    rows_per_array: int = 256  # crossbar rows: fan-in rows are tiled into arrays of this many rows
    cell_bits: int | None = None  # bits per memory cell: weights are split into slices of this many bits (None: one cell pair)
    mode: str = "fused"  # "fused" | "partial_sum"
    bit_serial: bool = False  # apply input bits one per cycle and shift-add (partial_sum: one conversion per bit)
    input_signed: bool = True  # signed inputs (two's complement when bit-serial); False for post-ReLU activations
    adc: ADCConfig = ADCConfig()  # ADC non-idealities
    ste: STEConfig = STEConfig()  # gradient rules of the NL-ADC

    def __post_init__(self):
        _check_int("in_bits", self.in_bits, 1, 16)
        _check_int("w_bits", self.w_bits, 1, 16)
        _check_int("adc_bits", self.adc_bits, 1, 16)
        _check_int("rows_per_array", self.rows_per_array, 1, 1 << 20)
        if self.cell_bits is not None:
            _check_int("cell_bits", self.cell_bits, 1, 8)
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown mode {self.mode!r}; choose one of {list(MODES)}")
        if not isinstance(self.adc, ADCConfig):
            raise ValueError(f"adc: expected an ADCConfig, got {type(self.adc).__name__}")
        if not isinstance(self.ste, STEConfig):
            raise ValueError(f"ste: expected an STEConfig, got {type(self.ste).__name__}")
        if self.input_signed and self.in_bits < 2 and not self.bit_serial:
            raise ValueError("in_bits: signed inputs need at least 2 bits (or input_signed=False)")

    @property
    def label(self) -> str:
        """The paper's notation, e.g. ``"6/2/3b fused"``."""
        return f"{self.in_bits}/{self.w_bits}/{self.adc_bits}b {self.mode}"
