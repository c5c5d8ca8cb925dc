"""Where `lines merge`'s wall time goes: interpreter + imports, then the merge itself.

    python merge_phases.py RECIPE OUT_DIR      # prints {"imports_s": ..., "merge_s": ...} as JSON

Run as its own process (like the CLI), so the split adds up to what `lines merge` costs.
"""
import json
import sys
import time

start = time.perf_counter()
import lines  # noqa: E402  (timed on purpose)

imported = time.perf_counter()
lines.merge(sys.argv[1], sys.argv[2], progress=False)
done = time.perf_counter()
print(json.dumps({"imports_s": imported - start, "merge_s": done - imported}))
