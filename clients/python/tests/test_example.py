"""The command-line example runs end to end (with fewer rows than its default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "customers.py"


def test_customers_example(server, postgres_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CIPHERD_"))}
    env.update(CIPHERD_ADDR=server.url, CIPHERD_TOKEN=server.token, DATABASE_URL=postgres_url)
    done = subprocess.run([sys.executable, str(EXAMPLE), "--rows", "500"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # 500 emails + 500 cards, 200 per request: 3 + 3 requests each way.
    assert "inserted 500 rows" in out and "rows/s), 6 cipherd requests" in out
    assert "read back 500 rows" in out
    assert "re-encrypted 500 emails and 500 cards" in out
    assert "all rows on the latest version and read back intact" in out
