"""Input/output pairs from falcoctl's own tests (pkg/driver/distro/*_test.go), kept as data
so the build side's naming and the loader's host identification are held to the same
vectors."""

# debian_test.go TestDistroDebianFixup: (uname -r, uname -v) -> (release, version) in names.
DEBIAN_FIXUP: list[tuple[str, str, str, str]] = [
    ("5.10.0-0.deb10.22-rt-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 5.10.178-3",
     "5.10.178-3-rt-amd64", "1"),
    ("6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)",
     "6.1.55-1-amd64", "1"),
    ("5.10.0-0.deb10.22-amd64", "#1 SMP PREEMPT_DYNAMIC", "5.10.0-0.deb10.22-amd64", "1"),
    ("5.10.0-0", "#39 SMP PREEMPT_DYNAMIC", "5.10.0-0", "39"),
    ("6.5.3-1~bpo12+1-rt-amd64", "#1 SMP PREEMPT_DYNAMIC", "6.5.3-1~bpo12+1-rt-amd64", "1"),
    ("6.5.3-1~bpo12+1-rt-amd64", "malformed", "6.5.3-1~bpo12+1-rt-amd64", "malformed"),
]
