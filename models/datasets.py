"""The data the committed models are trained and evaluated on (numpy only, deterministic).

- :func:`digits`: scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes;
  ``sklearn.datasets.load_digits``, no download), scaled to [0, 1], upsampled 2x (nearest) to
  16x16 and normalized with a fixed mean/std, split 75/25 stratified with a fixed seed.
- :func:`power_traces`: synthesized appliance power traces for non-intrusive load monitoring,
  one appliance class per trace, with the signatures that tell appliances apart in real
  household data (on/off steps, compressor cycles, ramps, duty cycling, decaying charge
  curves, noise), plus amplitude overlap between classes, a random baseline load and sensor
  noise so the task is not trivial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "APPLIANCES",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "POWER_SCALE",
    "Split",
    "digits",
    "power_traces",
    "synthesize_trace",
]

DIGITS_MEAN = 0.3
DIGITS_STD = 0.4
#: Watts that map to 1.0 in the normalized traces.
POWER_SCALE = 2500.0


@dataclass(frozen=True)
class Split:
    """Train and test arrays of one data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(size: int = 16, seed: int = 0, flat: bool = False) -> Split:
    """Digits as float32 ``[N, 1, size, size]`` (or ``[N, 64]`` 8x8 when ``flat``), int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    if flat:
        x = images.reshape(len(images), 64)
    else:
        factor = size // 8
        x = np.kron(images, np.ones((factor, factor), np.float32))[:, None]
    x = ((x - DIGITS_MEAN) / DIGITS_STD).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    return Split(x_train, y_train, x_test, y_test)


def _kettle(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Resistive load: one flat high-power block with sharp edges.
    n = len(t)
    start = rng.integers(0, n // 2)
    width = rng.integers(n // 8, n // 2)
    p = np.zeros(n)
    p[start : start + width] = rng.uniform(1200, 2400)
    return p


def _fridge(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Compressor: periodic on/off cycles, an inrush spike at each start.
    period = rng.uniform(60, 160)
    duty = rng.uniform(0.3, 0.6)
    phase = rng.uniform(0, period)
    on = ((t + phase) % period) < duty * period
    level = rng.uniform(80, 300)
    p = on * level
    starts = np.flatnonzero(np.diff(on.astype(int)) == 1) + 1
    p[starts] += level * rng.uniform(2.0, 4.0)
    return p


def _washing_machine(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Heater block, then a motor whose power ramps up and down in bursts.
    n = len(t)
    p = np.zeros(n)
    h0 = rng.integers(0, n // 4)
    hw = rng.integers(n // 8, n // 4)
    p[h0 : h0 + hw] = rng.uniform(1500, 2200)
    motor = 300 * (1 + np.sin(2 * np.pi * t / rng.uniform(20, 40))) * rng.uniform(0.5, 1.5)
    p[h0 + hw :] += motor[h0 + hw :] * (rng.random(n - h0 - hw) < 0.8)
    return p


def _microwave(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Magnetron duty cycling: fast square pulses at high power within an on window.
    n = len(t)
    period = rng.uniform(6, 14)
    on = ((t % period) < rng.uniform(0.4, 0.7) * period).astype(float)
    window = np.zeros(n)
    s = rng.integers(0, n // 3)
    window[s : s + rng.integers(n // 4, 2 * n // 3)] = 1
    return on * window * rng.uniform(900, 1500)


def _charger(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Battery charger: switch on, then an exponentially decaying charge curve.
    n = len(t)
    s = rng.integers(0, n // 3)
    p = np.zeros(n)
    tau = rng.uniform(40, 200)
    p[s:] = rng.uniform(40, 400) * np.exp(-(t[s:] - s) / tau) + rng.uniform(5, 20)
    return p


def _dimmer(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Dimmable lighting / heat pump soft start: linear ramp up, plateau, ramp down.
    n = len(t)
    a, b = sorted(rng.integers(0, n, size=2))
    c = min(n, b + rng.integers(n // 8, n // 3))
    peak = rng.uniform(200, 1200)
    p = np.zeros(n)
    p[a:b] = np.linspace(0, peak, b - a)
    p[b:c] = np.linspace(peak, 0, c - b) if rng.random() < 0.5 else peak
    return p


#: Appliance classes in label order, with the generator of their signature.
APPLIANCES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "kettle": _kettle,
    "fridge": _fridge,
    "washing_machine": _washing_machine,
    "microwave": _microwave,
    "charger": _charger,
    "dimmer": _dimmer,
}


def synthesize_trace(label: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """One normalized trace of appliance ``label`` over a random baseline with sensor noise."""
    t = np.arange(length, dtype=np.float64)
    p = list(APPLIANCES.values())[label](t, rng)
    baseline = rng.uniform(0, 150) + 30 * np.sin(2 * np.pi * t / rng.uniform(200, 800))
    noise = rng.normal(0, rng.uniform(5, 40), length)
    return ((p + baseline + noise) / POWER_SCALE).astype(np.float32)


def power_traces(
    n_train_per_class: int = 300,
    n_test_per_class: int = 100,
    length: int = 512,
    seed: int = 0,
) -> Split:
    """Power traces ``[N, 1, length]`` float32 with int64 appliance labels (see APPLIANCES)."""
    rng = np.random.default_rng(seed)

    def make(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(len(APPLIANCES)), per_class)
        rng.shuffle(labels)
        x = np.stack([synthesize_trace(int(y), length, rng) for y in labels])[:, None]
        return x, labels.astype(np.int64)

    x_train, y_train = make(n_train_per_class)
    x_test, y_test = make(n_test_per_class)
    return Split(x_train, y_train, x_test, y_test)
