"""Linear power and decibels, both ways (sigma0 dB = 10 log10(power))."""

from __future__ import annotations

import numpy as np

TINY_POWER = 1e-10  # -100 dB: floor for log10 of non-positive linear power


def power_to_db(power: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(np.maximum(power, TINY_POWER))).astype(np.float32)


def db_to_power(db: np.ndarray) -> np.ndarray:
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)
