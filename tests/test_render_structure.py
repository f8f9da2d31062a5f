"""What users hand the build side can change the words a script or a Dockerfile holds,
never their structure (issue #12).

Two walls, each tested on its own: the option table refuses every hostile value from
every source (flag, config YAML, environment), and the templates print a value only as one
quoted shell word (the quoting filters refuse line breaks, `finalize` refuses anything
printed raw). For the values the table accepts, the rendered script passes `bash -n`, its
assignments read back as exactly the values given, and with the quoted words masked the
script and the Dockerfile are byte-identical to a plain render.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivercore.errors import ToolError
from driverkit import render
from driverkit.config import load_config, resolve_plan
from driverkit.errors import UsageError
from driverkit.options import BY_NAME, OPTIONS
from driverkit.plan import BuildPlan
from driverkit.render import (
    UnquotedValueError,
    render_build_script,
    render_dockerfile,
)
from driverkit.runtime_images import RuntimeImageSpec, render_runtime_dockerfile
from driverkit.targets.base import Mirrors
from driverkit.targets.debian import suite_named
from tests.fuzz_helpers import FUZZ, python_module, run_bounded

MIRRORS = Mirrors(debian="http://mirror.invalid/debian")
RELEASE = "6.1.0-13-amd64"
BASH = shutil.which("bash") or "/bin/bash"

# Options whose value reaches a template, an image tag, a file name or a URL.
REACHING = (
    "kernels",
    "kernel_version",
    "target",
    "driver_name",
    "driver_version",
    "gcc_version",
    "builder_image",
    "kernel_urls",
    "debian_mirror",
    "debian_security_mirror",
)
# Options that name a file or a repository: any path is a path, but never one with a line
# break or a control character, and a URL only of inert characters.
PATH_LIKE = (
    *(opt.name for opt in OPTIONS if opt.kind == "path"),
    "publish_to",
    "repo",
    "public_key",
    "debian_keyring",
    "verify_command",
)

HOSTILE = (
    "rtcap\ntouch /tmp/PWNED\n#",
    "12\nRUN touch /PWNED",
    "a\x00b",
    "a\rb",
    "it's",
    'say "hi"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "a;touch PWNED",
    "a\\\nb",
    "a b --privileged",
    "--privileged",
    "line\u2028break",
    "para\u2029graph",
    "bidi\u202eevil",
    "x" * 5000,
    "../../../../var/tmp/x",
    "/etc",
)


def _sources(option_name: str, value: str) -> Iterator[tuple[str, object]]:
    """The raw value as each source hands it to the table: flag, YAML text, environment."""
    opt = BY_NAME[option_name]
    yield f"option {opt.flags[0]}", (value,) if opt.kind == "list" else value
    yield f"config x.yaml: {opt.yaml_key}", [value] if opt.kind == "list" else value
    yield f"environment: {opt.env_var}", value


@pytest.mark.parametrize("option_name", REACHING)
def test_the_table_refuses_hostile_values_from_every_source(option_name: str) -> None:
    opt = BY_NAME[option_name]
    for value in HOSTILE:
        for where, raw in _sources(option_name, value):
            with pytest.raises(ToolError) as refused:
                opt.convert(raw, where)
            message = str(refused.value)
            # One line naming the source and the option, and the accepted form.
            assert "\n" not in message and "\u2028" not in message, message
            assert message.startswith(where), message
            assert f"use {opt.form}" in message


@pytest.mark.parametrize("option_name", PATH_LIKE)
def test_path_like_options_refuse_line_breaks_and_odd_urls(option_name: str) -> None:
    opt = BY_NAME[option_name]
    bad = [v for v in HOSTILE if any(c in v for c in "\n\r\x00\u2028\u2029\u202e")]
    if option_name in ("publish_to", "repo"):
        bad += ["http://host/x;touch PWNED", "s3://bucket/$(id)", "https://a b/"]
    for value in bad:
        for where, raw in _sources(option_name, value):
            with pytest.raises(ToolError, match="is not accepted; use "):
                opt.convert(raw, where)


def test_every_text_option_has_an_accepted_form() -> None:
    for opt in OPTIONS:
        if opt.kind in ("str", "list", "path"):
            assert opt.rule is not None or opt.choices, opt.name
            # Nothing with a line break passes any option, paths included.
            for where, raw in _sources(opt.name, "a\nb"):
                with pytest.raises(ToolError):
                    opt.convert(raw, where)


# --- the templates' own wall -------------------------------------------------------


def test_a_value_printed_without_a_quoting_filter_fails_the_render() -> None:
    env = render._environment()
    with pytest.raises(UnquotedValueError):
        env.from_string("echo {{ value }}\n").render(value="x")
    with pytest.raises(UnquotedValueError):
        env.from_string("echo {{ values | join(' ') }}\n").render(values=["a"])
    assert env.from_string("echo {{ value | q }}\n").render(value="a b") == "echo 'a b'\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "\x1b[2J", ""])
def test_the_quoting_filters_refuse_what_quoting_cannot_make_safe(bad: str) -> None:
    env = render._environment()
    for source in ("{{ v | q }}", "{{ [v] | qwords }}", "{{ [v] | exec_form }}"):
        with pytest.raises(UsageError):
            env.from_string(source).render(v=bad)


def test_every_template_prints_only_quoted_values() -> None:
    # Rendering all of them under the refusing `finalize` is the check: a raw `{{ x }}`
    # anywhere would raise.
    plan = _plan()
    assert render_build_script(plan, build_core=True)
    assert render_dockerfile(plan.builder)
    for role in ("loader", "engine"):
        assert render_runtime_dockerfile(RuntimeImageSpec(role))


def test_a_plan_made_around_the_table_still_cannot_break_the_script(tmp_path: Path) -> None:
    plan = _plan()
    broken = dataclasses.replace(plan.kernel, full_extra_version="-x\ntouch PWNED\n#")
    with pytest.raises(UsageError, match="line-separator"):
        render_build_script(dataclasses.replace(plan, kernel=broken))
    with pytest.raises(UsageError, match="build plan: gcc version"):
        dataclasses.replace(plan, builder=dataclasses.replace(plan.builder, gcc="12\nRUN x"),
                            gcc="12\nRUN x")
    with pytest.raises(UsageError, match="line-separator"):
        render_dockerfile(dataclasses.replace(plan.builder, gcc="12\nRUN touch /PWNED"))
    # A metacharacter that is not a line break is quoted: run the script, nothing runs.
    odd = dataclasses.replace(plan.kernel, full_extra_version="-$(touch PWNED)`touch PWNED`")
    _run_script(render_build_script(dataclasses.replace(plan, kernel=odd)), tmp_path)
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "dk" / "PWNED").exists()


def _run_script(script: str, where: Path) -> subprocess.CompletedProcess[str]:
    """Run a rendered script as the local processor would, in `where`, with no driver
    sources (its make steps fail; what matters is what else ran)."""
    root = where / "dk"
    (root / "driver").mkdir(parents=True)
    (root / "headers").mkdir()
    (root / "build.sh").write_text(script)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DK_ROOT": str(root),
           "DK_KERNELDIR": str(root / "headers"), "HOME": str(where)}
    return subprocess.run([BASH, str(root / "build.sh")], cwd=where, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


# --- structure: accepted values change words only -----------------------------------


def _plan() -> BuildPlan:
    cfg = load_config({"target": "debian"}, environ={}, discovered_mirrors=MIRRORS)
    return resolve_plan(RELEASE, cfg)


_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters no value can hold
_MARKED = re.compile(f"{_OPEN}[^{_CLOSE}]*{_CLOSE}")


class _Recorder:
    """Renders through the real quoting filters whose output is also bracketed by two
    sentinel characters, so every printed value is found exactly where it was printed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("quote_word", "quote_words", "exec_form"):
            monkeypatch.setattr(render, name, self._wrap(getattr(render, name)))

    @staticmethod
    def _wrap(real: Callable[[object], render.QuotedText]) -> object:
        def bracketed(value: object) -> render.QuotedText:
            return render.QuotedText(_OPEN + real(value) + _CLOSE)

        return bracketed

    @staticmethod
    def masked_render(render_it: Callable[[], str]) -> tuple[str, str]:
        """(the render as it is, the render with every printed value replaced by one
        marker)."""
        marked = render_it()
        return marked.replace(_OPEN, "").replace(_CLOSE, ""), _MARKED.sub("\u27e6W\u27e7", marked)


def _instructions(dockerfile: str) -> list[str]:
    """Dockerfile instruction keywords in order (continuations joined, comments dropped)."""
    keywords: list[str] = []
    continued = False
    for line in dockerfile.splitlines():
        if not continued and line.strip() and not line.lstrip().startswith("#"):
            keywords.append(line.split()[0])
        continued = line.rstrip().endswith("\\")
    return keywords


def _read_back(script: str) -> dict[str, str]:
    """The script's value assignments as bash itself reads them."""
    names = ("KERNEL_RELEASE", "KMOD_NAME", "PROBE_NAME", "CORE_NAME")
    assignments = "\n".join(
        line for line in script.splitlines() if line.split("=", 1)[0] in names
    )
    printed = subprocess.run(
        [BASH, "-c", assignments + "\nprintf '%s\\0' " + " ".join(f'"${n}"' for n in names)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout
    return dict(zip(names, printed.split("\0")[:-1], strict=True))


def _syntax_ok(script: str) -> None:
    subprocess.run([BASH, "-n"], input=script, text=True, check=True)


_NAME_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
driver_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcXYZ019"),
    st.text(_NAME_CHARS, max_size=40),
)
_VERSION_CHARS = st.sampled_from("0123456789abcXYZ.+_~-")
driver_versions = st.builds(
    lambda first, rest: first + rest, st.sampled_from("019aZ"), st.text(_VERSION_CHARS,
                                                                         max_size=40)
).filter(lambda v: ".." not in v)
# A --gcc-version the kernel's own builder suite ships (any such gcc keeps the builder that
# suite's), with up to two more numbers: (which of the suite's gccs, the numbers after it).
gcc_versions = st.tuples(st.integers(0, 9), st.lists(st.integers(0, 99), max_size=2))
releases = st.builds(
    lambda major, minor, patch, abi, flavour: f"{major}.{minor}.{patch}-{abi}-{flavour}",
    st.integers(3, 7), st.integers(0, 20), st.integers(0, 300), st.integers(1, 99),
    st.sampled_from(["amd64", "cloud-amd64", "rt-amd64", "arm64"]),
)
kernel_versions = st.one_of(
    st.integers(1, 999).map(str),
    st.builds(lambda n, v: f"#{n} SMP PREEMPT_DYNAMIC Debian {v} (2025-09-20)",
              st.integers(1, 9), st.sampled_from(["6.1.153-1", "6.1.55-1~deb12u1"])),
)


@settings(FUZZ, max_examples=25)
@given(name=driver_names, version=driver_versions, gcc=gcc_versions, release=releases,
       kernel_version=kernel_versions)
@example(name="rtcap", version="0.1.0", gcc=(1, []), release=RELEASE, kernel_version="1")
@example(name="a-_", version="8.0.0+driver~rc1_x", gcc=(0, [10, 3]), release="6.1.0-99-rt-amd64",
         kernel_version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1~deb12u1 (2025-09-20)")
def test_accepted_values_change_words_never_structure(
    name: str, version: str, gcc: tuple[int, list[int]], release: str, kernel_version: str
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder = _Recorder(monkeypatch)
        # The plain render of the same kernel: its builder suite decides the Dockerfile's
        # sections, the options only the words.
        plain_cfg = load_config({"target": "debian"}, environ={}, discovered_mirrors=MIRRORS)
        plain = resolve_plan(release, plain_cfg)
        _, plain_script = recorder.masked_render(
            lambda: render_build_script(plain, build_core=True)
        )
        plain_dockerfile, plain_docker_masked = recorder.masked_render(
            lambda: render_dockerfile(plain.builder)
        )

        suite = suite_named(plain.builder.distro_release)
        assert suite is not None
        major = suite.gccs[gcc[0] % len(suite.gccs)]
        gcc_version = ".".join([major, *map(str, gcc[1])])
        cli = {"driver_name": name, "driver_version": version, "gcc_version": gcc_version,
               "kernel_version": kernel_version, "kernels": (release,)}
        cfg = load_config({"target": "debian", **cli}, environ={},
                          discovered_mirrors=MIRRORS)
        plan = resolve_plan(release, cfg)
        script, masked_script = recorder.masked_render(
            lambda: render_build_script(plan, build_core=True)
        )
        _syntax_ok(script)
        assert masked_script == plain_script
        dockerfile, masked_dockerfile = recorder.masked_render(
            lambda: render_dockerfile(plan.builder)
        )
        assert masked_dockerfile == plain_docker_masked
        assert _instructions(dockerfile) == _instructions(plain_dockerfile)

    assert script == render_build_script(plan, build_core=True)  # the real filters' text
    assert dockerfile == render_dockerfile(plan.builder)
    assert _read_back(script) == {
        "KERNEL_RELEASE": release,
        "KMOD_NAME": plan.kmod_name,
        "PROBE_NAME": plan.probe_name,
        "CORE_NAME": f"{name}_core.o",
    }
    assert plan.kmod_name.startswith(f"{name}_debian_")  # the release as Debian names it
    assert plan.builder.distro_release == suite.codename
    assert (plan.gcc, plan.wanted_gcc) == (major, gcc_version)
    assert plan.builder_image.startswith(f"driverkit-builder-{suite.codename}-gcc{major}:")


def test_the_plain_renders_are_the_images_they_were() -> None:
    # Builder image tags hash the rendered Dockerfile: quoting an ordinary value must not
    # change a byte of it (shlex.quote leaves such words as they are).
    plan = _plan()
    dockerfile = render_dockerfile(plan.builder)
    assert "\nFROM debian:bookworm\n" in dockerfile
    assert dockerfile.startswith("# Builder image rendered by driverkit (bookworm / gcc-12).\n")
    runtime = render_runtime_dockerfile(RuntimeImageSpec("engine"))
    assert 'ENTRYPOINT ["rt-engine", "run"]\n' in runtime
    assert "\n    apt-get update; \\\n    apt-get install -y gcc libc6-dev python3-dev\n" in runtime


# --- the reproducers of issue #12, through the command line ---------------------------


def _driverkit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    outcome = run_bounded(python_module("driverkit.entry", *args), cwd=cwd, env=env, stdin=b"")
    assert "Traceback" not in outcome.stderr, outcome.describe()
    return outcome.returncode, outcome.stdout, outcome.stderr


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--driver-name", "rtcap\ntouch PWNED\n#"), None, "option --driver-name"),
        ((), {"DRIVERKIT_DRIVERNAME": "rtcap\ntouch PWNED\n#"},
         "environment: DRIVERKIT_DRIVERNAME"),
        (("--gcc-version", "12\nRUN touch /PWNED"), None, "option --gcc-version"),
        (("--gcc-version", "12$(touch PWNED);--privileged"), None, "option --gcc-version"),
        (("--builder-image", "img;touch PWNED --privileged"), None, "option --builder-image"),
        (("--driver-version", "/etc"), None, "option --driver-version"),
        (("--driver-name", "../../../../var/tmp/x"), None, "option --driver-name"),
    ],
)
def test_issue_12_reproducers_are_refused_and_nothing_runs(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str] | None, named: str
) -> None:
    code, stdout, stderr = _driverkit("build", "--dry-run", "--kernel", RELEASE, *args,
                                      cwd=tmp_path, env=env)
    assert code == UsageError.exit_code
    assert stdout == ""  # nothing rendered
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"driverkit: error: {named}: "), stderr
    assert "is not accepted; use " in lines[0]
    assert not (tmp_path / "PWNED").exists()


def test_a_yaml_nul_in_the_driver_name_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "dk.yaml"
    config.write_text('drivername: "rtcap\\0touch PWNED"\n')
    code, stdout, stderr = _driverkit("build", "--dry-run", "--kernel", RELEASE, "-c",
                                      str(config), cwd=tmp_path)
    assert (code, stdout) == (UsageError.exit_code, "")
    assert "drivername: 'rtcap\\x00touch PWNED' is not accepted" in stderr


def test_the_accepted_dry_run_script_runs_nothing_but_its_steps(tmp_path: Path) -> None:
    # The author's check, on what is accepted now: render, then run the script with bash.
    code, stdout, _ = _driverkit("build", "--dry-run", "--kernel", RELEASE,
                                 "--driver-name", "rtcap-x_1", cwd=tmp_path)
    assert code == 0
    script = stdout.split("# build script\n", 1)[1]
    _syntax_ok(script)
    _run_script(script, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dk"]
