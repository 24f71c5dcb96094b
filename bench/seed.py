"""The seed's approach, done correctly: list the source with `s5cmd ls`, then for each object one
`s5cmd cat s3://src/key | s5cmd pipe s3://dst/key` pair, NUM_CONCURRENT pairs at a time, each pair's
exit codes checked and retried (the seed retries 5 times). `s5cmd cp s3://.. -` does not stream in
s5cmd 2.x, hence `cat`. Credentials come from SEED_{SRC,DST}_{AK,SK}; endpoints and buckets from argv.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def _env(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SEED_"))}
    env["AWS_ACCESS_KEY_ID"] = os.environ[f"SEED_{side}_AK"]
    env["AWS_SECRET_ACCESS_KEY"] = os.environ[f"SEED_{side}_SK"]
    env["AWS_REGION"] = "us-east-1"
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.seed")
    p.add_argument("--s5cmd", required=True)
    p.add_argument("--src-endpoint", required=True)
    p.add_argument("--src-bucket", required=True)
    p.add_argument("--dst-endpoint", required=True)
    p.add_argument("--dst-bucket", required=True)
    p.add_argument("--concurrent", type=int, default=4)
    p.add_argument("--attempts", type=int, default=5)
    a = p.parse_args(argv)
    src_env, dst_env = _env("SRC"), _env("DST")
    ls = subprocess.run(
        [a.s5cmd, "--endpoint-url", a.src_endpoint, "ls", f"s3://{a.src_bucket}/*"],
        env=src_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # "2024/01/15 12:00:00   65536 small/000001": the key is the 4th field (keys here hold no spaces).
    keys = [line.split(None, 3)[3] for line in ls.stdout.splitlines() if line.strip() and "DIR" not in line]

    def copy(key: str) -> bool:
        for _ in range(a.attempts):
            cat = subprocess.Popen(
                [a.s5cmd, "--endpoint-url", a.src_endpoint, "cat", f"s3://{a.src_bucket}/{key}"],
                env=src_env, stdout=subprocess.PIPE,
            )  # fmt: skip
            pipe = subprocess.run(
                [a.s5cmd, "--endpoint-url", a.dst_endpoint, "pipe", f"s3://{a.dst_bucket}/{key}"],
                env=dst_env, stdin=cat.stdout, stdout=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            assert cat.stdout is not None
            cat.stdout.close()
            if cat.wait() == 0 and pipe.returncode == 0:
                return True
        print(f"failed: {key}", file=sys.stderr)
        return False

    with ThreadPoolExecutor(a.concurrent) as pool:
        ok = all(list(pool.map(copy, keys)))
    print(f"seed: {len(keys)} objects, {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
