"""faceswap_pl.runtime: freed memory kept for reuse (glibc), seen in the kernel's page-fault count."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# 8 "steps" that each allocate and fill activations of 8, 33, 64, 33 and 8 MB, then free them all; prints the
# minor page faults the steps took, after retain_freed_memory() when asked
FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    from faceswap_pl.runtime import memory_retained, retain_freed_memory

    applied = retain_freed_memory() if sys.argv[1] == "retain" else False

    def step():
        return [torch.ones(mb << 18) for mb in (8, 33, 64, 33, 8)]

    step()  # the first step faults either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, applied, memory_retained())
""")


def _faults(mode: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults():
    default, retained = _faults("system"), _faults("retain")
    if retained[1] != "True":
        pytest.skip("this C library refuses mallopt")
    assert default[1:] == ["False", "False"] and retained[2] == "True"
    pages = 8 * (146 << 20) // 4096
    assert int(default[0]) > pages / 2  # glibc maps each large block afresh: every page faults again each step
    assert int(retained[0]) < pages / 4  # reused from the heap (measured: 11% of the pages fault)


def test_the_module_refuses_unknown_allocator_and_recompute_names():
    from faceswap_pl.errors import ModelOptionError
    from faceswap_pl.training.module import FaceSwapModule

    tiny = dict(backbone="unet", image_size=64, width=0.125, identity_encoder="sface", eye_model=None)
    with pytest.raises(ModelOptionError, match="model.cpu_allocator must be one of retain, system, got 'jemalloc'"):
        FaceSwapModule(**tiny, cpu_allocator="jemalloc")
    with pytest.raises(ModelOptionError, match="model.recompute_networks must be a list of encoder, identity"):
        FaceSwapModule(**tiny, recompute_networks=["arcface"])
    with pytest.raises(ModelOptionError, match="model.recompute_networks must be a list"):
        FaceSwapModule(**tiny, recompute_networks="identity")
