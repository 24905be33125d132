"""Issue #13, made to stay fixed: seeded hostile inputs against the error contract.

Every case runs the real CLI and must keep the contract of DESIGN.md and the README: exit 0, 1 or
2; no traceback; every stderr line ``convcli: error|warning|note: ...``; no Python warning text;
``--report json`` stdout is JSON lines; the inputs unchanged (hashed before and after); no
``.*.tmp-*`` temporary left under the output folder; every written PNG/NPY whole; and the run
finished within the time bound (a hang is killed and fails the case).

Families (tests/fuzz_cases.py makes them, from ``(seed, family, index)``):

- ``image-*``: a folder of hostile files (bit flips, truncations, absurd PNG IHDRs, empty and
  zero files, wrong suffixes, 1x1, palette/LA/16-bit/float/TIFF/EXIF, odd .npy, symlink loops, a
  folder named like an image) through ONE real ``python -m convcli apply FOLDER`` subprocess per
  family (every file must end in one outcome; exit 1 exactly when one failed), then
  ``explain FILE -k sobel`` per file through the fork runner.
- ``kspec-*``, ``yaml-*``, ``layer-*``, ``apply-options``, ``explain-numbers``, ``engine-empty``:
  one ``apply``/``explain``/``kernels show`` per case through the fork runner (convcli imported
  once, each case in a forked child with fds 0/1/2 redirected, killed on timeout: a process's
  real stderr at ~10 ms a case), mostly with ``--engine numpy``.
- ``subprocess-kspec``: a few kernel specs through fresh ``python -m convcli`` processes on the
  default engine.

The quick slice (the default, 150 cases plus the per-file runs) runs in the normal suite. The full run:

    CONVCLI_FUZZ_CASES=3000 python -m pytest tests/test_fuzz.py

Other knobs: ``CONVCLI_FUZZ_SEED`` (default 13), ``CONVCLI_FUZZ_TIMEOUT`` (seconds per run,
default 60), ``CONVCLI_FUZZ_ONLY=FAMILY#INDEX[,...]`` (just those cases; every failure message
prints its own rerun command).

Families that hit a bug already being fixed are listed in KNOWN_BUGS and run as
``xfail(strict=False)``; delete a line there once its fix is merged, and the family must pass.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fuzz_cases as fz
from conftest import subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

SEED = int(os.environ.get("CONVCLI_FUZZ_SEED", "13"))
TOTAL = int(os.environ.get("CONVCLI_FUZZ_CASES", "150"))
TIMEOUT = float(os.environ.get("CONVCLI_FUZZ_TIMEOUT", "60"))
ONLY = {c.strip() for c in os.environ.get("CONVCLI_FUZZ_ONLY", "").split(",") if c.strip()}
QUICK = TOTAL <= 400
KNOWN_TIMEOUT = 10.0 if QUICK else TIMEOUT   # a known-hang family need not cost a minute per case

# Families that hit a bug someone is fixing: family -> the bug. Remove a line when its fix lands.
KNOWN_BUGS: dict[str, str] = {}   # family -> reason; none open (all of #13's are fixed)
# Found by this fuzz test beyond #13's list: xfail with the reason until fixed.
NEW_BUGS: dict[str, str] = {}
KNOWN_BUGS.update(NEW_BUGS)

RUNNER = Path(fz.__file__)

# (family, weight): a family gets about TOTAL * weight / sum(weights) cases, at least 3.
IMAGE_FAMILIES = [
    ("image-bitflip", 3), ("image-bitflip-tiff", 2), ("image-trunc", 3), ("image-trunc-tiff", 2),
    ("image-png-header", 2), ("image-odd-files", 3), ("image-modes", 2), ("image-tiff", 2),
    ("image-tiff-tags", 1), ("image-exif", 1), ("image-exif-corrupt", 1), ("image-npy", 3),
    ("image-npy-bitflip", 1),
    ("image-symlink-loop", 1), ("image-symlink-dangling", 1),
]
FORKED_FAMILIES = [
    ("kspec-named", 5), ("kspec-junk", 6), ("kspec-unicode-digits", 2), ("kspec-huge", 2),
    ("kspec-long-name", 1),
    ("yaml-kernel", 4), ("yaml-junk", 3), ("yaml-huge-numbers", 2), ("yaml-deep", 1),
    ("yaml-aliases", 1), ("layer-specs", 5), ("layer-huge", 2), ("layer-yaml", 2),
    ("apply-options", 5), ("options-unicode-digits", 1), ("explain-numbers", 3),
    ("engine-empty", 1),
]
SUBPROCESS_KSPEC = "subprocess-kspec"
ALL_WEIGHTS = sum(w for _, w in IMAGE_FAMILIES + FORKED_FAMILIES)


def count(family: str, weight: int) -> int:
    return max(3, round(TOTAL * weight / ALL_WEIGHTS))


def indices(family: str, weight: int) -> list[int]:
    """The case indices of a family this run: all of them, or the CONVCLI_FUZZ_ONLY ones."""
    if ONLY:
        return sorted(int(c.split("#")[1]) for c in ONLY if c.split("#")[0] == family)
    return list(range(count(family, weight)))


def this_run(family: str, weight: int) -> tuple[list[int], float]:
    """(case indices, seconds per run) of a family; skips a family CONVCLI_FUZZ_ONLY leaves out."""
    chosen = indices(family, weight)
    if not chosen:
        pytest.skip("CONVCLI_FUZZ_ONLY names no case of this family")
    return chosen, KNOWN_TIMEOUT if family in KNOWN_BUGS else TIMEOUT


def params(families):
    out = []
    for family, weight in families:
        marks = ([pytest.mark.xfail(strict=False, reason=KNOWN_BUGS[family])]
                 if family in KNOWN_BUGS else [])
        out.append(pytest.param(family, weight, id=family, marks=marks))
    return out


def rerun(case_id: str) -> str:
    return (f"CONVCLI_FUZZ_SEED={SEED} CONVCLI_FUZZ_ONLY='{case_id}' "
            f"python -m pytest tests/test_fuzz.py")


def describe(case_id: str, argv, problems: list[str], result: dict | None = None) -> str:
    text = (f"{case_id} (seed {SEED}): {'; '.join(problems)}\n"
            f"    command: convcli {shlex.join(map(str, argv))}\n"
            f"    rerun:   {rerun(case_id)}")
    if result is not None and result.get("stderr"):
        text += "\n    stderr:  " + result["stderr"][-600:].replace("\n", "\n             ")
    return text


def run_forked(cases: list[dict], tmp_path: Path, timeout: float) -> list[dict]:
    """Run cases through the fork runner (one interpreter, one fork per case)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cases_file, results_file = tmp_path / "cases.json", tmp_path / "results.json"
    cases_file.write_text(json.dumps(cases))
    budget = timeout * len(cases) + 60
    subprocess.run([sys.executable, str(RUNNER), str(cases_file), str(results_file), str(timeout)],
                   env=subprocess_env(), cwd=tmp_path, check=True, timeout=budget,
                   capture_output=True)
    return json.loads(results_file.read_text())


def check_case(case: dict, result: dict, timeout: float, digests_before: dict) -> list[str]:
    problems = fz.contract_problems(result, timeout=timeout)
    inputs = Path(case["inputs"])
    if fz.tree_digest(inputs) != digests_before[case["id"]]:
        problems.append("an input file was modified")
    out = Path(case["out"])
    if left := fz.leftovers(out):
        problems.append(f"temporary files left: {left[:3]}")
    if broken := fz.broken_outputs(out):
        problems.append(f"outputs not whole: {broken[:3]}")
    return problems


@pytest.mark.parametrize(("family", "weight"), params(FORKED_FAMILIES))
def test_forked_family_keeps_the_contract(family, weight, tmp_path):
    chosen, timeout = this_run(family, weight)
    cases = [fz.make_case(family, i, SEED, tmp_path / "cases") for i in chosen]
    before = {c["id"]: fz.tree_digest(Path(c["inputs"])) for c in cases}
    results = run_forked(cases, tmp_path, timeout)
    failures = []
    for case, result in zip(cases, results):
        if problems := check_case(case, result, timeout, before):
            failures.append(describe(case["id"], case["argv"], problems, result))
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract:\n" + \
        "\n".join(failures)


@pytest.mark.parametrize(("family", "weight"), params(IMAGE_FAMILIES))
def test_hostile_image_folder_keeps_the_contract(family, weight, tmp_path):
    chosen, timeout = this_run(family, weight)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    files = {}
    for i in chosen:
        path = fz.hostile_file(fz.rng_for(SEED, family, i), family, folder, i)
        if path is not None:
            files[f"{family}#{i}"] = path
    before = fz.tree_digest(folder)

    # one real process over the whole folder
    argv = ["apply", str(folder), "-k", "sobel", "-k", "gaussian:sigma=1", "-o", str(out),
            "--engine", "numpy", "--report", "json"]
    env = subprocess_env()
    start = time.monotonic()
    try:
        process = subprocess.run([sys.executable, "-m", "convcli", *argv], env=env, cwd=tmp_path,
                                 capture_output=True, timeout=timeout * 2, stdin=subprocess.DEVNULL,
                                 preexec_fn=fz.limit_memory)
        result = {"argv": argv, "code": process.returncode, "hung": False,
                  "stdout": process.stdout.decode("utf-8", "replace"),
                  "stderr": process.stderr.decode("utf-8", "replace")}
    except subprocess.TimeoutExpired as expired:
        result = {"argv": argv, "code": None, "hung": True, "stdout": "", "stderr": ""}
        del expired
    seconds = time.monotonic() - start
    failures = []
    batch_id = f"{family}#" + ",".join(str(i) for i in chosen)
    problems = fz.contract_problems(result, timeout=timeout * 2)
    if not result["hung"]:
        errors = [l for l in result["stderr"].splitlines() if l.startswith("convcli: error: ")]
        if result["code"] not in (0, 1) or (result["code"] == 1) != bool(errors):
            problems.append(f"a batch exits 1 exactly when a file failed: exit {result['code']}, "
                            f"{len(errors)} error lines")
        said = result["stdout"] + result["stderr"]
        silent = [case for case, path in files.items()
                  if path.name not in said and not path.is_dir()]   # sub-folders need -r
        if silent:
            problems.append(f"no outcome (no record, error or warning) for {silent[:5]}")
    if fz.tree_digest(folder) != before:
        problems.append("an input file was modified")
    if left := fz.leftovers(out):
        problems.append(f"temporary files left: {left[:3]}")
    if broken := fz.broken_outputs(out):
        problems.append(f"outputs not whole: {broken[:3]}")
    if problems:
        failures.append(describe(batch_id, argv, problems + [f"{seconds:.1f} s"], result))

    # each file alone: explain reads its header, apply names it as an argument (not a folder)
    single = tmp_path / "single"
    cases = [{"id": case_id, "argv": argv, "inputs": str(folder), "out": str(single)}
             for case_id, path in files.items()
             for argv in (["explain", str(path), "-k", "sobel"],
                          ["apply", str(path), "-k", "sobel", "-o", str(single), "--engine", "numpy"])]
    results = run_forked(cases, tmp_path / "forked", timeout) if cases else []
    for case, result in zip(cases, results):
        if problems := fz.contract_problems(result, timeout=timeout):
            failures.append(describe(case["id"], case["argv"], problems, result))
    if fz.tree_digest(folder) != before:
        failures.append(f"{family}: a single-file run modified an input")
    if left := fz.leftovers(single):
        failures.append(f"{family}: single-file runs left temporary files: {left[:3]}")
    if broken := fz.broken_outputs(single):
        failures.append(f"{family}: single-file outputs not whole: {broken[:3]}")
    assert not failures, f"{len(failures)} failures in {family}:\n" + "\n".join(failures)


@pytest.mark.parametrize("index", range(3))
def test_kernel_specs_in_a_fresh_process_on_the_default_engine(index, tmp_path):
    """A few specs through real ``python -m convcli`` runs (auto engine), not the fork runner."""
    case_id = f"{SUBPROCESS_KSPEC}#{index}"
    if ONLY and case_id not in ONLY:
        pytest.skip("CONVCLI_FUZZ_ONLY names another case")
    rng = fz.rng_for(SEED, SUBPROCESS_KSPEC, index)
    image = fz.tiny_png(tmp_path / "in" / "img.png", rng)
    before = fz.tree_digest(tmp_path / "in")
    specs = [fz.kernel_spec(rng, fz.pick(rng, ["kspec-named", "kspec-junk"])) for _ in range(3)]
    argv = ["apply", str(image), *[a for s in specs for a in ("-k", s)], "-o", str(tmp_path / "out")]
    process = subprocess.run([sys.executable, "-m", "convcli", *argv], env=subprocess_env(),
                             capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=fz.limit_memory)
    result = {"argv": argv, "code": process.returncode, "hung": False,
              "stdout": process.stdout.decode("utf-8", "replace"),
              "stderr": process.stderr.decode("utf-8", "replace")}
    problems = fz.contract_problems(result, timeout=TIMEOUT)
    if fz.tree_digest(tmp_path / "in") != before:
        problems.append("an input file was modified")
    if left := fz.leftovers(tmp_path / "out"):
        problems.append(f"temporary files left: {left[:3]}")
    assert not problems, describe(case_id, argv, problems, result)
