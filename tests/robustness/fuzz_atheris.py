"""Coverage-guided fuzzing of one reader with atheris (libFuzzer), on demand.

Usage::

    python tests/robustness/fuzz_atheris.py TARGET [libFuzzer options] [CORPUS_DIR ...]
    python tests/robustness/fuzz_atheris.py tfrecord_stage3 -runs=200000 -max_total_time=600

``TARGET`` is a key of ``fuzz_targets.TARGETS`` (``--list`` prints them). Each input
replaces one file of the target's seed: its first byte picks the file, the rest is the
file's content. The seed's files are the starting corpus (written to a temporary folder
when no corpus folder is given). eochange's own modules are instrumented, so libFuzzer
steers the mutations towards new branches of eochange's parsers.

An :class:`~eochange.errors.EOChangeError` is an expected outcome; any other exception
(or a contract assertion of the target) stops the run with the input saved as
``crash-<sha1>`` (see ``-artifact_prefix=DIR/``), and libFuzzer's ``-timeout=S`` and
``-rss_limit_mb=MB`` turn hangs and memory blow-ups into findings too. Exit status 0
means no finding. ``make robustness`` runs a bounded session per parser
(``test_fuzz_atheris.py``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402

# Everything the targets read with, imported (and instrumented) before fuzzing starts.
with atheris.instrument_imports(include=["eochange"]):
    import eochange.datasets.deeptemporal
    import eochange.datasets.dynamicearthnet_layout
    import eochange.datasets.dynamicearthnet_sources
    import eochange.datasets.sen12ms_splits
    import eochange.datasets.transfer
    import eochange.inference.checkpoint
    import eochange.io.chunks
    import eochange.io.cube
    import eochange.io.eopatch
    import eochange.io.paths
    import eochange.io.raster
    import eochange.io.safe_pickle
    import eochange.io.tfrecord
    import eochange.models.upstream.common
    import eochange.models.upstream.ercnn_drs  # noqa: F401

from fuzz_targets import TARGETS  # noqa: E402

from eochange.errors import EOChangeError  # noqa: E402


def main() -> None:
    """Fuzz the target named by the first argument (see the module docstring)."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "--list"):
        print(__doc__)
        print("targets:", ", ".join(TARGETS))
        return
    target = TARGETS[sys.argv.pop(1)]
    work = Path(tempfile.mkdtemp(prefix=f"eochange-atheris-{target.name}-"))
    seed = work / "seed"
    seed.mkdir()
    files = target.build(seed)
    originals = [(seed / f).read_bytes() for f in files]
    current = [work / "in0"]
    shutil.copytree(seed, current[0])
    count = [0]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        corpus = work / "corpus"
        corpus.mkdir()
        for index, data in enumerate(originals):
            (corpus / f"seed{index}").write_bytes(bytes([index]) + data)
        sys.argv.append(str(corpus))

    def one(data: bytes) -> None:
        index = data[0] % len(files) if data else 0
        count[0] += 1
        folder = work / f"in{count[0]}"  # a new name per input: no cache keyed by path
        current[0].rename(folder)
        current[0] = folder
        path = folder / files[index]
        path.write_bytes(data[1:])
        try:
            target.read(folder)
        except EOChangeError:
            pass
        finally:
            path.write_bytes(originals[index])

    atheris.Setup(sys.argv, one)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
