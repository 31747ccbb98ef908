"""Worker process of the fuzz tests: reads one input per request, survives everything.

Protocol (JSON lines): the parent writes ``{"target": NAME, "folder": PATH}`` and the
worker answers ``{"status": "ok", "digest": ...}``, ``{"status": "error", "type": ...,
"message": ...}`` for an :class:`~eochange.errors.EOChangeError`, or ``{"status":
"other", "type": ..., "message": ..., "traceback": ...}`` for anything else. A hang or
a crash (segfault, abort, out of memory) is seen by the parent (:mod:`fuzz_harness`).

The address space is capped (``EOCHANGE_FUZZ_MEMORY`` bytes, default 3 GiB) so that a
header claiming a huge array fails in the worker instead of exhausting the machine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    """Answer requests until stdin closes."""
    limit = int(os.environ.get("EOCHANGE_FUZZ_MEMORY", 3 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    import rasterio  # noqa: F401 - imported before the first request, not timed in it
    import torch

    torch.set_num_threads(1)
    np.seterr(all="ignore")
    warnings.simplefilter("ignore")
    from fuzz_targets import TARGETS, digest

    from eochange.errors import EOChangeError

    out = sys.stdout
    print(json.dumps({"status": "ready"}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        target = TARGETS[request["target"]]
        try:
            value = target.read(Path(request["folder"]))
            result = {"status": "ok", "digest": digest(value)}
            if target.records:
                result["records"] = [digest(item) for item in value]
        except EOChangeError as err:
            result = {"status": "error", "type": type(err).__name__, "message": str(err)}
        except BaseException as err:  # noqa: BLE001 - every other outcome is a finding
            if isinstance(err, KeyboardInterrupt):
                raise
            result = {
                "status": "other",
                "type": type(err).__name__,
                "message": str(err)[:500],
                "traceback": "".join(traceback.format_exception(err))[-3000:],
            }
        print(json.dumps(result), file=out, flush=True)


if __name__ == "__main__":
    main()
