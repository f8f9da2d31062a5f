"""Build-time verifier check of eBPF artifacts (driverkit.verifier) on the host kernel:
a real program compiled here with clang, once well-formed and once reading past its map
value, which the verifier must refuse with its reason."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from driverkit.errors import ArtifactValidationError
from driverkit.verifier import verify_on_host
from tests.conftest import require

PROGRAM = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[2]);
} counts SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int count_enter(void *ctx)
{
	__u32 key = 0, at = INDEX;
	__u64 *slot = bpf_map_lookup_elem(&counts, &key);

	if (slot)
		slot[at] += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _compile(tmp: Path, index: int) -> Path:
    require(shutil.which("clang") is not None, "needs clang (see ci/setup.sh)")
    require(Path("/usr/include/bpf/bpf_helpers.h").is_file(), "needs libbpf-dev")
    src = tmp / "count.bpf.c"
    src.write_text(PROGRAM)
    out = tmp / f"count-{index}.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-DINDEX={index}",
                    "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return out


@pytest.mark.root
@pytest.mark.bpf
def test_the_host_verifier_passes_a_sound_probe_and_refuses_a_broken_one(tmp_path: Path
                                                                         ) -> None:
    assert verify_on_host(_compile(tmp_path, 1), "amd64").startswith("passed on ")
    with pytest.raises(ArtifactValidationError, match=r"count-5\.o: the verifier .* refused"
                       ) as refused:  # fmt: skip
        verify_on_host(_compile(tmp_path, 5), "amd64")
    assert "map value" in str(refused.value)  # the verifier's own reason is kept
    assert "\n" not in str(refused.value)


def test_another_arch_is_skipped_with_the_reason(tmp_path: Path) -> None:
    assert verify_on_host(tmp_path / "never-read.o", "s390x").startswith("skipped: built for")
