"""The CPU's features decide the int8 weight range and TensorFlow's oneDNN switch, the same way on any machine.

Each case reads a cpuinfo file written here (an AVX2-only AMD EPYC, an AVX-512 VNNI one, a hybrid with
AVX-VNNI) so the decisions are tested on every kind of CPU, whatever the machine running the tests has.
"""

from __future__ import annotations

import pytest

from shared.cpu import INT16_MAX, cpu_info, int8_setting, tensorflow_onednn, u8s8_pair_bound

AVX2_ONLY = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2"
AVX512_VNNI = AVX2_ONLY + " avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
AVX_VNNI = AVX2_ONLY + " avx_vnni"


def _cpu(tmp_path, flags: str, model: str = "AMD EPYC 7B12"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nmodel name\t: {model}\nflags\t\t: {flags}\n")
    return cpu_info(str(path))


@pytest.mark.parametrize("flags,isa,vnni,setting", [
    (AVX2_ONLY, "AVX2", False, "no-vnni"),
    (AVX512_VNNI, "AVX-512 + VNNI", True, "vnni"),
    (AVX_VNNI, "AVX2 + AVX-VNNI", True, "vnni"),
])
def test_int8_setting_follows_vnni(tmp_path, monkeypatch, flags, isa, vnni, setting):
    monkeypatch.delenv("TWINVISION_INT8_KERNELS", raising=False)
    cpu = _cpu(tmp_path, flags)
    assert cpu.isa == isa and cpu.vnni is vnni and cpu.model == "AMD EPYC 7B12"
    chosen = int8_setting(cpu=cpu)
    assert chosen.name == setting
    assert chosen.weight_range == ((-128, 127) if vnni else (-64, 63))


def test_unknown_cpu_gets_the_setting_that_is_exact_everywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("TWINVISION_INT8_KERNELS", raising=False)
    cpu = cpu_info(str(tmp_path / "missing"))
    assert cpu.flags is None and cpu.vnni is None
    assert int8_setting(cpu=cpu).name == "no-vnni"


def test_int8_setting_can_be_forced_and_rejects_nonsense(tmp_path, monkeypatch):
    vnni_cpu = _cpu(tmp_path, AVX512_VNNI)
    monkeypatch.setenv("TWINVISION_INT8_KERNELS", "no-vnni")
    assert int8_setting(cpu=vnni_cpu).reduce_range
    assert int8_setting("vnni", cpu=vnni_cpu).weight_bits == 8
    with pytest.raises(ValueError, match="TWINVISION_INT8_KERNELS.*received 'avx3'"):
        int8_setting("avx3")


def test_seven_bit_weights_are_what_keeps_a_pair_inside_int16():
    assert u8s8_pair_bound(64) <= INT16_MAX < u8s8_pair_bound(65)
    assert u8s8_pair_bound(128) == 2 * 255 * 128


def test_tensorflow_onednn_is_turned_on_where_tensorflow_would_leave_it_off(tmp_path):
    env: dict = {}
    decision = tensorflow_onednn(env, _cpu(tmp_path, AVX2_ONLY))
    assert decision["enabled"] and decision["source"] == "twinvision" and env["TF_ENABLE_ONEDNN_OPTS"] == "1"
    env = {}
    decision = tensorflow_onednn(env, _cpu(tmp_path, AVX512_VNNI))
    assert decision["enabled"] and decision["source"] == "TensorFlow's default" and not env
    env = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    decision = tensorflow_onednn(env, _cpu(tmp_path, AVX2_ONLY))
    assert not decision["enabled"] and decision["source"] == "user environment" and env["TF_ENABLE_ONEDNN_OPTS"] == "0"
