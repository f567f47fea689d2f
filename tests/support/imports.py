"""What a ``flowreg`` process imports: start-up cost is part of every command's cost."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("qdrant_client", "kopf", "kubernetes", "pydantic", "jsonschema", "httpx", "grpc")


def imported_by(*argv: str) -> set[str]:
    """The top-level packages a ``flowreg`` process has imported when ``argv`` is done."""
    code = ("import sys\nfrom flowreg.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                            text=True, timeout=120)
    return set(result.stdout.split())
