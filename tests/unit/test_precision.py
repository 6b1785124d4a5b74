"""trainer.precision resolution for every device and CPU kind, faked at the torch boundary."""

from __future__ import annotations

import warnings

import pytest
import torch  # at collection, as in the other unit tests: the probe test times only the probe

from arttl.errors import ConfigError
from arttl.training import precision as P
from arttl.training.precision import (
    PrecisionWarning,
    check_precision,
    cpu_bf16_support,
    lightning_device,
    resolve_precision,
)

# What cpu_bf16_support() reports on a Sapphire Rapids Xeon (AMX) and on an AVX-512 EPYC.
AMX_CPU = {
    "native_bf16": True,
    "avx512_bf16": True,
    "amx": True,
    "arm_bf16": False,
    "onednn_bf16": True,
}
PLAIN_CPU = {
    "native_bf16": False,
    "avx512_bf16": False,
    "amx": False,
    "arm_bf16": False,
    "onednn_bf16": True,
}
X86_SPR = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
X86_ZEN3 = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}


def resolve(
    requested, accelerator="auto", *, cuda=False, mps=False, cpu=PLAIN_CPU, gpu_bf16=True, **kw
):
    return resolve_precision(
        requested,
        accelerator,
        cuda_available=cuda,
        mps_available=mps,
        cpu_bf16=cpu,
        cuda_bf16=gpu_bf16,
        **kw,
    )


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- cpu_bf16_support: what torch/oneDNN say, not a list of CPU models ----------------------------
def test_cpu_bf16_amx_and_avx512_bf16():
    got = cpu_bf16_support(X86_SPR, onednn_bf16=True, amx_usable=True, machine="x86_64")
    assert got == AMX_CPU


def test_cpu_bf16_avx512_bf16_without_amx_is_native():
    caps = {**X86_SPR, "amx_bf16": False, "amx_tile": False}
    got = cpu_bf16_support(caps, onednn_bf16=True, amx_usable=True, machine="x86_64")
    assert got["native_bf16"] and got["avx512_bf16"] and not got["amx"]


def test_cpu_without_bf16_instructions_is_not_native():
    got = cpu_bf16_support(X86_ZEN3, onednn_bf16=True, amx_usable=True, machine="x86_64")
    assert got == PLAIN_CPU


def test_cpu_bf16_needs_onednn_and_os_permission_for_amx():
    assert not cpu_bf16_support(X86_SPR, onednn_bf16=False, amx_usable=True)["native_bf16"]
    caps = {**X86_SPR, "avx512_bf16": False}
    denied = cpu_bf16_support(caps, onednn_bf16=True, amx_usable=False, machine="x86_64")
    assert not denied["amx"] and not denied["native_bf16"]


def test_cpu_bf16_arm():
    got = cpu_bf16_support({"bf16": True}, onednn_bf16=True, machine="aarch64")
    assert got["arm_bf16"] and got["native_bf16"]
    assert not cpu_bf16_support({"bf16": True}, onednn_bf16=True, machine="x86_64")["arm_bf16"]


def test_cpu_bf16_probes_are_monkeypatchable(monkeypatch):
    monkeypatch.setattr(P, "_cpu_capabilities", lambda: dict(X86_ZEN3))
    monkeypatch.setattr(P, "_onednn_bf16", lambda: True)
    assert cpu_bf16_support(machine="x86_64") == PLAIN_CPU
    monkeypatch.setattr(P, "_cpu_capabilities", lambda: dict(X86_SPR))
    monkeypatch.setattr(P, "_amx_usable", lambda: True)
    assert cpu_bf16_support(machine="x86_64") == AMX_CPU


def test_cpu_bf16_real_probe_returns_bools():
    got = cpu_bf16_support()
    assert torch.backends.mkldnn.is_available() or not got["native_bf16"]
    assert set(got) == set(AMX_CPU) and all(isinstance(v, bool) for v in got.values())


# -- which device Lightning will use ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("accelerator", "cuda", "mps", "device"),
    [
        ("auto", True, False, "cuda"),
        ("auto", False, True, "mps"),
        ("auto", False, False, "cpu"),
        (None, True, False, "cuda"),
        ("gpu", True, False, "cuda"),
        ("gpu", False, True, "mps"),
        ("cuda", False, False, "cuda"),
        ("cpu", True, False, "cpu"),
        ("mps", False, True, "mps"),
    ],
)
def test_lightning_device(accelerator, cuda, mps, device):
    assert lightning_device(accelerator, cuda, mps) == device


# -- auto ------------------------------------------------------------------------------------------
def test_auto_cuda_is_bf16_mixed_channels_last(no_warnings):
    got = resolve("auto", cuda=True)
    assert (got.precision, got.device, got.channels_last) == ("bf16-mixed", "cuda", True)


def test_auto_cuda_without_native_bf16_is_16_mixed(no_warnings):
    got = resolve("auto", cuda=True, gpu_bf16=False)
    assert (got.precision, got.channels_last) == ("16-mixed", True)


def test_auto_cpu_without_bf16_is_32_true(no_warnings):
    got = resolve("auto", cpu=PLAIN_CPU)
    assert (got.precision, got.device, got.channels_last) == ("32-true", "cpu", False)
    assert "without native bf16" in got.reason


def test_auto_cpu_with_native_bf16_is_bf16_mixed(no_warnings, monkeypatch):
    # B6 (bench/README.md): parity with fp32 held and bf16 trained faster on an AMX Xeon.
    got = resolve("auto", cpu=AMX_CPU)
    assert (got.precision, got.device, got.channels_last) == ("bf16-mixed", "cpu", False)
    assert "AMX" in got.reason
    monkeypatch.setattr(P, "CPU_BF16_AUTO", False)  # the rule where B6 would say "no parity"
    got = resolve("auto", cpu=AMX_CPU)
    assert got.precision == "32-true" and "opt-in" in got.reason


def test_auto_mps_is_32_true_without_channels_last(no_warnings):
    got = resolve("auto", mps=True)
    assert (got.precision, got.device, got.channels_last) == ("32-true", "mps", False)


def test_auto_other_accelerator_is_lightnings_default():
    got = resolve("auto", "tpu")
    assert (got.precision, got.device, got.channels_last) == ("32-true", "tpu", False)


@pytest.mark.parametrize(
    ("cuda", "mps", "cpu"),
    [(True, False, AMX_CPU), (False, False, PLAIN_CPU), (False, True, AMX_CPU)],
)
def test_null_means_auto(cuda, mps, cpu):
    assert resolve(None, cuda=cuda, mps=mps, cpu=cpu) == resolve(
        "auto", cuda=cuda, mps=mps, cpu=cpu
    )


def test_auto_probes_are_monkeypatchable(monkeypatch, no_warnings):
    monkeypatch.setattr(P, "_cuda_available", lambda: True)
    monkeypatch.setattr(P, "_mps_available", lambda: False)
    monkeypatch.setattr(P, "_cuda_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: dict(PLAIN_CPU))
    got = resolve_precision(None, "auto")
    assert (got.precision, got.device, got.cpu_bf16) == ("bf16-mixed", "cuda", PLAIN_CPU)


# -- explicit strings pass through -----------------------------------------------------------------
@pytest.mark.parametrize("accelerator", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("value", ["32-true", "64-true", "16-true"])
def test_explicit_precision_passes_through(accelerator, value, no_warnings):
    got = resolve(value, accelerator, cuda=accelerator == "cuda", cpu=AMX_CPU)
    assert got.precision == value and got.reason == "set by trainer.precision"


@pytest.mark.parametrize(
    ("value", "full"),
    [
        ("bf16", "bf16-mixed"),
        ("32", "32-true"),
        (32, "32-true"),
        (16, "16-mixed"),
        ("BF16-Mixed", "bf16-mixed"),
    ],
)
def test_aliases_become_full_names(value, full):
    assert resolve(value, "cuda", cuda=True).precision == full


def test_explicit_bf16_on_native_cpu_and_16_mixed_on_mps(no_warnings):
    assert resolve("bf16-mixed", "cpu", cpu=AMX_CPU).precision == "bf16-mixed"
    assert resolve("16-mixed", "mps", mps=True).precision == "16-mixed"
    assert resolve("bf16-mixed", cuda=True).precision == "bf16-mixed"


def test_channels_last_from_config_wins():
    assert resolve("auto", cuda=True, channels_last=False).channels_last is False
    assert resolve("auto", "cpu", channels_last=True).channels_last is True


@pytest.mark.parametrize("bad", ["fp16", "bfloat16", "mixed", True, 8])
def test_unknown_precision_names_key_value_and_choices(bad):
    with pytest.raises(ConfigError) as err:
        resolve(bad)
    msg = str(err.value)
    assert (
        "trainer.precision=" in msg and repr(bad) in msg and "bf16-mixed" in msg and "auto" in msg
    )
    assert check_precision(bad) == msg


@pytest.mark.parametrize(
    "good", [None, "auto", "bf16-mixed", "16-mixed", "32", 32, "transformer-engine"]
)
def test_check_precision_accepts_lightning_values(good):
    assert check_precision(good) is None


# -- forcing bf16 where it is emulated warns with the measured cost -------------------------------
@pytest.mark.parametrize("value", ["bf16-mixed", "bf16-true", "bf16", "16-mixed"])
def test_bf16_forced_on_cpu_without_native_bf16_warns(value):
    with pytest.warns(PrecisionWarning, match="6–44×") as record:
        got = resolve(value, "cpu", cpu=PLAIN_CPU)
    assert got.precision == P.normalize_precision(value)  # still runs as asked
    assert "without native bf16" in str(record[0].message) and "32-true" in str(record[0].message)
    assert "emulated" in got.reason


def test_bf16_forced_on_old_gpu_warns():
    with pytest.warns(PrecisionWarning, match="compute capability"):
        got = resolve("bf16-mixed", "cuda", cuda=True, gpu_bf16=False)
    assert got.precision == "bf16-mixed"


def test_bf16_on_native_cpu_is_silent(no_warnings):
    resolve("bf16-mixed", "cpu", cpu=AMX_CPU)
    resolve("32-true", "cpu", cpu=PLAIN_CPU)


# -- the line printed once, and the results.json keys ----------------------------------------------
def test_describe_cuda():
    line = resolve("auto", cuda=True).describe()
    assert line == "precision: bf16-mixed on cuda (GPU has native bf16) · channels_last"


def test_describe_cpu_bf16():
    line = resolve("bf16-mixed", "cpu", cpu=AMX_CPU).describe()
    assert line == (
        "precision: bf16-mixed on cpu (set by trainer.precision; CPU has native bf16: AMX, AVX512-BF16)"
    )
    assert "\n" not in resolve("auto", cpu=AMX_CPU).describe()


def test_describe_auto_cpu_with_native_bf16():
    line = resolve(None, cpu=AMX_CPU).describe()
    assert line == "precision: bf16-mixed on cpu (CPU has native bf16: AMX, AVX512-BF16)"


def test_describe_cpu_without_bf16():
    line = resolve("auto", cpu=PLAIN_CPU).describe()
    assert line == "precision: 32-true on cpu (CPU without native bf16)"


def test_record_keys():
    rec = resolve("auto", cpu=AMX_CPU).record()
    assert rec == {
        "precision": "bf16-mixed",
        "device": "cpu",
        "channels_last": False,
        "cpu_bf16": AMX_CPU,
    }
