"""Allocator settings at process start: Arrow on the system allocator, glibc tuned once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os
from pipelines.process_memory import tune_process_memory
tune_process_memory()
import pyarrow as pa
print(json.dumps({
    "pool": pa.default_memory_pool().backend_name,
    "arena": os.environ.get("MALLOC_ARENA_MAX"),
    "mmap": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
}))
"""


def _probe(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ARROW_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def test_arrow_uses_the_system_allocator_and_children_inherit_the_malloc_settings():
    seen = _probe()
    # exported so that spawned decode workers start with the same settings
    assert seen == {"pool": "system", "arena": "2", "mmap": str(128 * 1024)}


def test_settings_the_user_chose_are_left_alone():
    seen = _probe(ARROW_DEFAULT_MEMORY_POOL="mimalloc", MALLOC_ARENA_MAX="4")
    assert seen["arena"] == "4"
    assert seen["pool"] == "mimalloc"


def test_httpx_works_without_its_command_line_and_what_it_imports():
    probe = """
import json, sys
from pipelines.process_memory import skip_unused_imports
skip_unused_imports()
import httpx
client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
print(json.dumps({
    "status": client.get("http://example.test/").status_code,
    "loaded": sorted(m for m in ("httpx._main", "rich", "click", "pygments")
                     if sys.modules.get(m) is not None),
}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"status": 204, "loaded": []}
