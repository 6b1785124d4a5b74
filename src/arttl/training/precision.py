"""Which numeric precision and memory format a run trains in, chosen from the hardware it runs on.

``trainer.precision`` is ``auto`` (the default; ``null`` means the same) or any precision string
Lightning takes, passed through. ``auto`` asks torch (cpuinfo and oneDNN), never a list of CPU
models, and follows what the benchmarks measured (bench/README.md, B5 and B6):

- CUDA: ``bf16-mixed`` where the GPU computes bf16 natively (compute capability >= 8.0), else
  ``16-mixed``; channels_last on. (Not measured by arttl yet: bench/gpu_check.py.)
- CPU with native bf16 (AVX512-BF16 / AMX, or ARM BF16, as torch/oneDNN report it):
  ``bf16-mixed`` — B6 measured test-accuracy parity with fp32 and faster training (see
  ``CPU_BF16_AUTO``). CPU without: ``32-true``, and forcing bf16 there warns with its cost.
  channels_last stays off on CPU (``CPU_CHANNELS_LAST``).
- MPS (Apple GPUs): ``32-true``; ``16-mixed`` is opt-in (see ``_auto``).

Which device Lightning will use mirrors ``trainer.accelerator`` (``auto``/``gpu``: MPS, then
CUDA, then CPU, the order of ``lightning.fabric.utilities.device_parser._select_auto_accelerator``).
Every hardware probe is a parameter of ``resolve_precision`` or a module function a test can
monkeypatch, so tests fake the hardware at the torch boundary.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arttl.errors import choice_error

__all__ = [
    "LIGHTNING_PRECISIONS",
    "PRECISION_CHOICES",
    "PrecisionChoice",
    "PrecisionWarning",
    "check_precision",
    "cpu_bf16_support",
    "lightning_device",
    "resolve_precision",
]

AUTO = "auto"
# Lightning 2.x precision strings (lightning.fabric.plugins.precision.precision._PRECISION_INPUT).
LIGHTNING_PRECISIONS = (
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
)
# Lightning's short forms (and the ints Hydra makes of `trainer.precision=32`) → full names.
ALIASES: dict[str, str] = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
PRECISION_CHOICES = (AUTO, *LIGHTNING_PRECISIONS, *ALIASES)
BF16 = ("bf16-mixed", "bf16-true")

# B6 (bench/results/b6_precision.md; bench/README.md "B6"): the demo (resnet18 from scratch,
# 64 px, 400 AHE photos) trained in fp32 and in bf16-mixed, 3 seeds each, interleaved, on a
# 2-core Intel Xeon with AVX512-BF16 + AMX. Rule: bf16-mixed is the CPU default only where it
# holds parity (|Δ mean test top-1| <= the larger seed std of the two) AND trains faster.
# Measured: fp32 0.400 ± 0.050, bf16 0.425 ± 0.025 (Δ +0.025 <= 0.050: parity), 1.21× the
# training images/s (network only: 1.21× at 64 px, 2.46× at 224 px). So: default where native.
CPU_BF16_AUTO = True
# channels_last on CPU: B6's bf16 + channels_last trained faster (1.44×) but missed the parity
# rule (0.300 ± 0.090, Δ −0.100 > 0.090), and fp32 + channels_last was no faster at 64 px
# (0.91×, network only); so it stays opt-in (channels_last=true) on CPU.
CPU_CHANNELS_LAST = False
# The cost of bf16 without native instructions, measured (bench/README.md, B5): bf16 autocast
# ran resnet18 inference 6–44× slower than fp32 on an AMD EPYC without AVX512-BF16/AMX.
NO_BF16_COST = (
    "bench B5 measured bf16 autocast 6–44× slower than fp32 on a CPU without native bf16 "
    "(AMD EPYC, no AVX512-BF16/AMX; bench/README.md)"
)


class PrecisionWarning(UserWarning):
    """A precision that runs, but far slower than another one would on this hardware."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What one run trains in, and why. ``precision`` is the string given to ``L.Trainer``."""

    precision: str
    device: str  # "cuda" | "cpu" | "mps" | another Lightning accelerator name
    channels_last: bool
    cpu_bf16: dict[str, bool] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        """One line to print once, e.g.
        ``precision: bf16-mixed on cuda (GPU has native bf16) · channels_last``."""
        line = f"precision: {self.precision} on {self.device} ({self.reason})"
        return line + (" · channels_last" if self.channels_last else "")

    def record(self) -> dict[str, Any]:
        """The keys results.json gets: precision, device, channels_last, cpu_bf16."""
        return {
            "precision": self.precision,
            "device": self.device,
            "channels_last": self.channels_last,
            "cpu_bf16": dict(self.cpu_bf16),
        }


# -- hardware probes (each a plain function, so tests can monkeypatch them) ---------------------
def _cpu_capabilities() -> dict[str, Any]:
    """torch's cpuinfo view of this CPU (``torch.cpu.get_capabilities``, else older helpers)."""
    import torch

    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return dict(get())
        except Exception:  # a probe must never stop a run; unknown counts as "no"
            pass
    caps: dict[str, Any] = {}
    for key, name in (
        ("avx512_bf16", "_is_avx512_bf16_supported"),
        ("amx_tile", "_is_amx_tile_supported"),
    ):
        fn = getattr(torch.cpu, name, None) or getattr(torch._C._cpu, name, None)
        try:
            caps[key] = bool(fn()) if fn is not None else False
        except Exception:
            caps[key] = False
    caps["amx_bf16"] = caps["amx_tile"]  # older torch only reports the tile unit
    return caps


def _onednn_bf16() -> bool:
    """oneDNN is built in and will run bf16 kernels (natively or emulated: see the caps)."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return False
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def _amx_usable() -> bool:
    """The OS lets this process use AMX tiles (Linux asks per process; oneDNN does the same)."""
    import torch

    fn = getattr(torch.cpu, "_init_amx", None) or getattr(torch._C._cpu, "_init_amx", None)
    try:
        return bool(fn()) if fn is not None else True
    except Exception:
        return False


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_bf16() -> bool:
    """The GPU computes bf16 natively (Ampere, compute capability 8.0, or newer)."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation
        return bool(torch.cuda.is_bf16_supported())
    except Exception:
        return False


def cpu_bf16_support(
    caps: Mapping[str, Any] | None = None,
    onednn_bf16: bool | None = None,
    amx_usable: bool | None = None,
    machine: str | None = None,
) -> dict[str, bool]:
    """Whether this CPU runs bf16 natively, as torch and oneDNN see it.

    ``native_bf16`` needs oneDNN's bf16 kernels and an instruction set that computes in bf16:
    AVX512-BF16 or AMX (x86), or the BF16 extension (ARM). Without them oneDNN emulates bf16 on
    AVX-512 (or falls back to slow reference kernels), which is what B5 measured 6–44× slower.
    The arguments replace the probes (for tests); None asks torch.
    """
    caps = dict(_cpu_capabilities() if caps is None else caps)
    onednn = _onednn_bf16() if onednn_bf16 is None else bool(onednn_bf16)
    arch = (machine or platform.machine()).lower()
    avx512_bf16 = bool(caps.get("avx512_bf16", False))
    amx_units = bool(caps.get("amx_bf16", False)) and bool(caps.get("amx_tile", False))
    amx = amx_units and (_amx_usable() if amx_usable is None else bool(amx_usable))
    arm = arch.startswith(("arm", "aarch64"))
    arm_bf16 = arm and (bool(caps.get("bf16", False)) or bool(caps.get("sve_bf16", False)))
    return {
        "native_bf16": onednn and (avx512_bf16 or amx or arm_bf16),
        "avx512_bf16": avx512_bf16,
        "amx": amx,
        "arm_bf16": arm_bf16,
        "onednn_bf16": onednn,
    }


def _bf16_units(cpu_bf16: Mapping[str, bool]) -> str:
    units = [
        name
        for key, name in (("amx", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("arm_bf16", "ARM BF16"))
        if cpu_bf16.get(key)
    ]
    return ", ".join(units) or "none"


# -- resolution ---------------------------------------------------------------------------------
def lightning_device(
    accelerator: str | None, cuda_available: bool | None = None, mps_available: bool | None = None
) -> str:
    """The device Lightning will train on for ``trainer.accelerator`` (``auto``/``gpu``/a name)."""
    acc = str(accelerator or AUTO).lower()
    if acc == "cuda":
        return "cuda"
    if acc not in (AUTO, "gpu"):
        return acc  # cpu, mps, tpu, hpu: what was asked (the config check refuses unknown names)
    mps = _mps_available() if mps_available is None else mps_available
    cuda = _cuda_available() if cuda_available is None else cuda_available
    if mps:  # Lightning asks MPS first, for "auto" and "gpu" alike
        return "mps"
    if cuda:
        return "cuda"
    return "cpu"  # "gpu" without one: Lightning raises its own error later


def normalize_precision(requested: Any) -> str:
    """``auto`` for None/"auto"; Lightning's full name for aliases (``bf16``, ``32``, 16, ...).

    Raises ``ConfigError`` (naming the key, the value and the choices) for anything else.
    """
    if requested is None:
        return AUTO
    if isinstance(requested, bool):  # true/false are not precisions (and bool is an int)
        raise choice_error("trainer.precision", requested, PRECISION_CHOICES)
    value = str(requested).strip().lower()
    if value == AUTO or value in LIGHTNING_PRECISIONS:
        return value
    if value in ALIASES:
        return ALIASES[value]
    raise choice_error(
        "trainer.precision",
        requested,
        PRECISION_CHOICES,
        "auto picks per device (bf16-mixed on CUDA and on CPUs with native bf16, else 32-true)",
    )


def check_precision(requested: Any) -> str | None:
    """The config-check message for a bad ``trainer.precision``, or None (for arttl.config_schema)."""
    try:
        normalize_precision(requested)
    except ValueError as err:
        return str(err)
    return None


def _auto(device: str, cpu_bf16: Mapping[str, bool], cuda_bf16: bool) -> tuple[str, str]:
    if device == "cuda":
        if cuda_bf16:
            return "bf16-mixed", "GPU has native bf16"
        return "16-mixed", "GPU without native bf16 (compute capability < 8.0): fp16 AMP"
    if device == "cpu":
        if not cpu_bf16.get("native_bf16"):
            return "32-true", "CPU without native bf16"
        units = _bf16_units(cpu_bf16)
        if CPU_BF16_AUTO:  # see the B6 note at CPU_BF16_AUTO
            return "bf16-mixed", f"CPU has native bf16: {units}"
        return "32-true", f"CPU has native bf16 ({units}); bf16-mixed is opt-in (CPU_BF16_AUTO)"
    if device == "mps":
        # Lightning runs 16-mixed on MPS (torch.autocast("mps") + GradScaler), and bf16 needs
        # macOS 14; neither is measured by arttl, and MPS op coverage still changes release to
        # release, so auto stays on fp32 there. 16-mixed is an explicit opt-in.
        return "32-true", "MPS: mixed precision not measured by arttl; 16-mixed is opt-in"
    return "32-true", f"no arttl rule for accelerator {device!r}: Lightning's default"


def resolve_precision(
    requested: Any,
    accelerator: str | None = AUTO,
    *,
    channels_last: bool | None = None,
    cuda_available: bool | None = None,
    mps_available: bool | None = None,
    cpu_bf16: Mapping[str, bool] | None = None,
    cuda_bf16: bool | None = None,
) -> PrecisionChoice:
    """Resolve ``trainer.precision`` (+ ``channels_last``) for ``trainer.accelerator``.

    ``requested``: "auto" or None (choose per device, see the module doc), or a Lightning
    precision string, passed through (aliases become full names). ``channels_last``: the
    config's value; None = on for CUDA only. The keyword-only arguments replace the hardware
    probes (for tests); None asks torch. A bf16 precision forced on a CPU (or GPU) without native
    bf16 warns with the measured cost (``PrecisionWarning``) and still runs as asked.
    """
    want = normalize_precision(requested)
    device = lightning_device(accelerator, cuda_available, mps_available)
    cpu = dict(cpu_bf16_support() if cpu_bf16 is None else cpu_bf16)
    cuda_native = (_cuda_bf16() if cuda_bf16 is None else cuda_bf16) if device == "cuda" else False
    if want == AUTO:
        precision, reason = _auto(device, cpu, cuda_native)
    else:
        precision, reason = want, "set by trainer.precision"
        # Lightning itself turns 16-mixed on CPU into bf16-mixed (fp16 AMP has no CPU kernels).
        runs_bf16 = precision in BF16 or (device == "cpu" and precision == "16-mixed")
        if device == "cpu" and runs_bf16 and not cpu.get("native_bf16"):
            warnings.warn(
                f"trainer.precision={precision} on a CPU without native bf16 (no AVX512-BF16/AMX): "
                f"it runs emulated, and {NO_BF16_COST}. Use trainer.precision=auto (32-true here).",
                PrecisionWarning,
                stacklevel=2,
            )
            reason += "; CPU without native bf16: emulated, slow"
        elif device == "cpu" and runs_bf16:
            reason += f"; CPU has native bf16: {_bf16_units(cpu)}"
        elif device == "cuda" and precision in BF16 and not cuda_native:
            warnings.warn(
                f"trainer.precision={precision} on a GPU without native bf16 (compute capability "
                "< 8.0): bf16 is emulated or refused there. Use trainer.precision=auto (16-mixed).",
                PrecisionWarning,
                stacklevel=2,
            )
            reason += "; GPU without native bf16"
    if channels_last is None:
        cl = device == "cuda" or (device == "cpu" and CPU_CHANNELS_LAST)
    else:
        cl = bool(channels_last)
    return PrecisionChoice(precision, device, cl, cpu, reason)
