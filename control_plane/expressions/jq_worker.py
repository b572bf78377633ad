"""The jq worker process: reads requests on stdin, answers on stdout, one JSON line each.

Started by :mod:`control_plane.expressions.jq_sandbox` with an empty environment, a working
directory of its own and a cap on its address space; it imports nothing of Squall's but this
module. A request is ``{"p": program, "d": input as JSON text, "m": max characters}``; the
answer is ``{"ok": [results]}`` or ``{"error": message}``. Results are produced one at a time
and counted, so an endless generator (``repeat(.)``) ends at the size limit instead of filling
memory; a program that loops without producing anything is the parent's to kill.
"""

from __future__ import annotations

import json
import resource
import sys
from functools import lru_cache
from typing import Any


def _answer(program: Any, data: str, limit: int) -> str:
    parts: list[str] = []
    size = 0
    for result in program.input_text(data):
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        size += len(text) + 1
        if size > limit:
            return json.dumps({"error": f"jq produced more than {limit} characters", "limit": True})
        parts.append(text)
    return '{"ok":[' + ",".join(parts) + "]}"


def main(memory: int) -> None:
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    import jq

    compile_program = lru_cache(maxsize=256)(jq.compile)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            program = compile_program(request["p"])
        except ValueError as exc:
            answer = json.dumps({"error": str(exc).strip(), "compile": True})
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()
            continue
        try:
            answer = _answer(program, request["d"], int(request["m"]))
        except ValueError as exc:  # jq's compile and runtime errors
            answer = json.dumps({"error": str(exc).strip()})
        except MemoryError:
            answer = json.dumps({"error": f"jq ran out of memory ({memory} bytes)", "limit": True})
        except RecursionError:
            answer = json.dumps({"error": "jq result nested too deeply"})
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
