"""Fuzz the build side's inputs through the real command line (issue #12).

Kernel release strings, every option's value from each source (flag, environment, config
YAML) and whole config documents go through `driverkit build --dry-run` and `driverkit
resolve`. Each must end with exit 0, or with one `driverkit: error:` line and a non-zero
code: never a traceback, and always within the fuzz suite's memory and time bound.

Inputs run in batches in one bounded child process (tests/driverkit_batch.py): a child
per input would spend the test budget on interpreter start-up.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivercore.errors import ExitCode
from driverkit.options import OPTIONS, Option
from tests.fuzz_helpers import FUZZ, FUZZ_EXAMPLES, Outcome, python_module, run_bounded

RELEASE = "6.1.0-13-amd64"
BATCH = 24  # inputs per child process
# Each example is one child with a batch of inputs: FUZZ_EXAMPLES=2000 scales them up.
BATCHES = settings(FUZZ, max_examples=max(4, FUZZ_EXAMPLES // 8))
CODES = {int(code) for code in ExitCode}

# Text as hostile input comes: control characters, line separators, quotes and shell
# syntax, lone surrogates (argv bytes that were not UTF-8), and long runs.
_HOSTILE_PIECES = [
    "\n", "\r", "\x00", "\x1b", "\u2028", "\u2029", "\u202e", "\ufeff", "\udcff", "'", '"',
    "`", "$(", ")", ";", "&", "|", "\\", " ", "--privileged", "../", "/", "*", "&a", "!!",
    "{", "}", "[", "]", ":", "#", "%", "~", "0.10", "1:30", "0x1F", ".inf", "9" * 60,
]
hostile_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_HOSTILE_PIECES) | st.text(max_size=4), max_size=12).map("".join),
    st.text(st.characters(codec="ascii"), max_size=40),
)


def _case(argv: list[str], env: dict[str, str] | None = None,
          files: dict[str, bytes] | None = None) -> dict[str, Any]:
    return {
        "argv": argv,
        "env": env or {},
        "files": {name: base64.b64encode(data).decode() for name, data in (files or {}).items()},
    }


def _run_batch(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    payload = json.dumps(cases).encode()
    outcome = run_bounded(python_module("tests.driverkit_batch"), stdin=payload,
                          timeout=60.0)
    assert outcome.returncode == 0, outcome.describe()
    results: list[dict[str, Any]] = json.loads(outcome.stdout)
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        _assert_clean(case, result)
    return results


def _assert_clean(case: dict[str, Any], result: dict[str, Any]) -> None:
    shown = Outcome(tuple(case["argv"]), result["code"], "", result["stderr"]).describe()
    detail = f"{shown}\nenv: {case['env']!r}\nfiles: {case['files']!r}"
    assert "Traceback" not in result["stderr"], detail
    assert result["code"] == 0 or result["code"] in CODES, detail
    if result["code"] != 0:
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert len(lines) == 1, detail
        assert lines[0].startswith("driverkit: error: "), detail


def _argv_safe(text: str) -> bool:
    """What an argv or an environment value can hold: no NUL, and bytes for the OS."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


# --- kernel releases ---------------------------------------------------------------

releases = st.one_of(
    hostile_text,
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}[-.+~_][0-9A-Za-z._+~-]{0,60}", fullmatch=True),
)


@settings(BATCHES)
@given(st.lists(releases.filter(_argv_safe), min_size=1, max_size=BATCH))
@example([RELEASE, "5.10.0;id", "$(id)", "6.1.0-13-amd64\ntouch PWNED", "6" * 5000,
          "6.1.0-13-amd64\u2028x", "../6.1", "6.1.0-\udcff", "-6.1", "6..1.0"])
def test_kernel_releases(batch: list[str]) -> None:
    cases = []
    for release in batch:
        cases.append(_case(["resolve", "--kernel", release, "--target", "debian"]))
        cases.append(_case(["build", "--dry-run", "--kernel", release]))
    _run_batch(cases)


# --- every option's value, from every source ---------------------------------------

VALUED = tuple(opt for opt in OPTIONS if "build" in opt.commands)


def _option_case(opt: Option, source: str, value: str, quoted: bool) -> dict[str, Any]:
    base = ["build", "--dry-run", "--kernel", RELEASE]
    if source == "flag" and opt.kind != "bool":
        return _case([*base, opt.flags[0], value])
    if source == "env" or (opt.kind == "bool" and source == "flag"):
        return _case(base, env={opt.env_var: value})
    # YAML: as a JSON string (a YAML double-quoted scalar: any text, escapes included), or
    # written raw after the key (whatever the YAML parser makes of it).
    scalar = json.dumps(value) if quoted else value
    document = _nested(opt.yaml_key, scalar)
    return _case([*base, "-c", "{dir}/dk.yaml"],
                 files={"dk.yaml": document.encode("utf-8", "surrogatepass")})


def _nested(dotted: str, scalar: str) -> str:
    section, _, key = dotted.rpartition(".")
    if section:
        return f"{section}:\n  {key}: {scalar}\n"
    return f"{key}: {scalar}\n"


option_cases = st.builds(
    _option_case,
    st.sampled_from(VALUED),
    st.sampled_from(["flag", "env", "yaml"]),
    hostile_text,
    st.booleans(),
).filter(lambda case: all(_argv_safe(a) for a in case["argv"])
         and all(_argv_safe(v) for v in case["env"].values()))


@settings(BATCHES)
@given(st.lists(option_cases, min_size=1, max_size=BATCH))
@example([
    _option_case(VALUED[0], "yaml", "a\x00b", True),
    *(_option_case(opt, source, value, True)
      for opt in VALUED
      for source in ("flag", "env", "yaml")
      for value in ("12\nRUN touch /PWNED", "$(touch PWNED)", "", "-1", "\u2028", "~nouser/x")
      if _argv_safe(value)),
])
def test_option_values_from_every_source(batch: list[dict[str, Any]]) -> None:
    _run_batch(batch)


# --- whole config documents ----------------------------------------------------------

_scalars = st.one_of(hostile_text, st.integers(), st.floats(), st.booleans(), st.none())
_yaml_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
_known_keys = st.sampled_from([opt.yaml_key.split(".")[0] for opt in OPTIONS])
structured_documents = st.dictionaries(_known_keys | st.text(max_size=10), _yaml_values,
                                       max_size=6).map(
    lambda doc: yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")
)
raw_documents = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([*_HOSTILE_PIECES, "jobs", "drivername", "output", "- ", "\n  ",
                              "&x", "*x", "<<: ", "!!str ", "? "]),
             max_size=30).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
)

_BOMB = "\n".join(
    ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    + ["drivername: *a8"]
).encode()
HOSTILE_DOCUMENTS = [
    _BOMB,
    b"jobs: .inf\n",
    b"jobs: " + b"9" * 5000 + b"\n",
    b"drivername: \xff\xfe\n",
    b"jobs: 1\njobs: 2\n",
    b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    b"a: &x [*x]\n",
    b"drivername: !!python/object/apply:os.system [touch PWNED]\n",
    b"output: {module: *nope}\n",
    b"<<: {jobs: 2}\n",
    b"kernelrelease: !!binary aGVsbG8=\n",
    b"driverversion: 2001-12-14t21:59:43.10-05:00\n",
    b"? [a, b]\n: c\n",
    b"output: [1, 2]\n",
    b"\xef\xbb\xbfjobs: 2\n",
]


@settings(BATCHES)
@given(st.lists(structured_documents | raw_documents, min_size=1, max_size=BATCH))
@example(HOSTILE_DOCUMENTS)
def test_config_documents(batch: list[bytes]) -> None:
    cases = []
    for document in batch:
        files = {"dk.yaml": document}
        cases.append(_case(["build", "--dry-run", "--kernel", RELEASE, "-c", "{dir}/dk.yaml"],
                           files=files))
        cases.append(_case(["resolve", "--kernel", RELEASE, "-c", "{dir}/dk.yaml"],
                           files=files))
    _run_batch(cases)


# --- kernel-crawler catalogs -----------------------------------------------------------

_catalog_entries = st.fixed_dictionaries(
    {},
    optional={
        "kernelrelease": releases | st.integers(),
        "kernelversion": hostile_text | st.integers() | st.none(),
        "target": st.sampled_from(["debian", "ubuntu", "nope"]) | hostile_text,
        "headers": st.lists(hostile_text | st.just("{debian}/pool/x.deb"), max_size=3)
        | hostile_text,
    },
)
catalogs = st.one_of(
    st.dictionaries(st.text(max_size=8), st.lists(_catalog_entries, max_size=3) | _yaml_values,
                    max_size=3).map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=100),
)


@settings(BATCHES)
@given(st.lists(catalogs, min_size=1, max_size=BATCH))
@example([b"[" * 100_000 + b"]" * 100_000, b'{"Debian": [{"kernelrelease": "6.1.0-13-amd64",'
          b' "target": "debian", "headers": ["http://x/a;touch PWNED"]}]}'])
def test_catalogs(batch: list[bytes]) -> None:
    cases = [
        _case(["build", "--dry-run", "--catalog", "{dir}/catalog.json"],
              files={"catalog.json": catalog},
              env={"DRIVERKIT_DEBIAN_MIRROR": "http://mirror.invalid/debian"})
        for catalog in batch
    ]
    _run_batch(cases)
