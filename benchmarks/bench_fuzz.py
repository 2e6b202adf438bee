"""The image-reader fuzzer, run long (issue 22).

Run: ``.venv/bin/python benchmarks/bench_fuzz.py --examples 100000``. Runs the properties of
``tests/test_fuzz_images.py`` (mutated MRC, TIFF and PNG files read in-process: a result
consistent with the header, or one ``InputError``; and ``cryoem-denoise info`` on some of
them: exit 0, or exit 2 with one error line) with random seeds instead of the test suite's
fixed ones, in chunks of ``--chunk`` examples (a new seed each, so a failure does not stop
the run), split across the kinds by ``--share``. Writes ``benchmarks/results/fuzz_images.json``:
examples, outcomes, seconds and every failure (kind, seed, the failing case and error) per
kind. A failing case is not shrunk (hypothesis' shrinking can take minutes); rerun it in
the test module to see it.
"""

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from common import save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_fuzz_images as fz  # noqa: E402  (the properties, shared with the test suite)

#: Share of the examples each kind gets by default ('cli': ``cryoem-denoise info``).
SHARE = {"mrc": 0.4, "tiff": 0.3, "png": 0.25, "cli": 0.05}


def strategy(kind):
    if kind == "cli":
        return st.one_of(fz.example("mrc"), fz.example("tiff"), fz.example("png"))
    return fz.example(kind)


def run_chunk(kind, examples, chunk_seed, folder):
    """Run ``examples`` examples of ``kind`` with ``chunk_seed``; return (counts, failure)."""
    counts, last = {}, {}
    check = fz.check_cli if kind == "cli" else fz.check_read
    inner = fz.fuzz_property(folder, check, counts)

    def prop(case):
        last["case"] = case
        inner(case)

    test = settings(fz.fuzz_settings(examples, derandomize=False),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking
    failure = None
    try:
        seed(chunk_seed)(test(given(strategy(kind))(prop)))()
    except Exception as exc:  # a failing example: recorded, the run goes on
        failure = {"seed": chunk_seed, "case": repr(last.get("case")),
                   "error": "".join(traceback.format_exception_only(type(exc), exc))[-2000:]}
    return counts, failure


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="examples in all")
    parser.add_argument("--chunk", type=int, default=5_000, help="examples per seed")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--kinds", default=",".join(SHARE),
                        help=f"kinds to run, from {', '.join(SHARE)}")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON result")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    total_share = sum(SHARE[k] for k in kinds)
    first_seed = args.seed if args.seed is not None else random.randrange(2**32)
    report = {"examples_requested": args.examples, "chunk": args.chunk,
              "first_seed": first_seed, "kinds": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as folder:
        set_hypothesis_home_dir(home)
        next_seed = first_seed
        for kind in kinds:
            want = round(args.examples * SHARE[kind] / total_share)
            done, outcomes, failures, seconds = 0, {}, [], 0.0
            while done < want:
                n = min(args.chunk, want - done)
                t0 = time.perf_counter()
                counts, failure = run_chunk(kind, n, next_seed, folder)
                seconds += time.perf_counter() - t0
                ran = sum(counts.values()) + (failure is not None)
                for key, value in counts.items():
                    outcomes[key] = outcomes.get(key, 0) + value
                if failure:
                    failures.append(failure)
                    print(f"{kind}: FAILURE with seed {next_seed}: {failure['error']}",
                          flush=True)
                done += max(ran, 1)
                next_seed += 1
                print(f"{kind}: {done:,}/{want:,} examples, {len(failures)} failure(s), "
                      f"{seconds:.0f} s", flush=True)
            report["kinds"][kind] = {
                "examples": sum(outcomes.values()) + len(failures), "outcomes": outcomes,
                "failures": len(failures), "failure_details": failures,
                "seconds": round(seconds, 1),
                "examples_per_second": round(sum(outcomes.values()) / seconds, 1)
                if seconds else None}
    report["examples"] = sum(k["examples"] for k in report["kinds"].values())
    report["failures"] = sum(k["failures"] for k in report["kinds"].values())
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "kinds"}))
    for kind, r in report["kinds"].items():
        print(f"  {kind}: {r['examples']:,} examples ({r['outcomes']}), {r['failures']} "
              f"failure(s), {r['seconds']} s")
    if not args.no_save:
        print(f"saved {save('fuzz_images', report)}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
