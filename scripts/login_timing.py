#!/usr/bin/env python3
"""Client half of scripts/login-timing.sh (Python 3.11 standard library only).

Measures POST /auth/login latency for
  (a) an unknown email (a fresh random address each trial), and
  (b) the known, verified email with a wrong password (fresh each trial),
interleaved pair by pair (which of the two goes first alternates), after a
few warm-up calls of each. Prints the median of each, the ratio
unknown/wrong, and PASS when 0.9 <= ratio <= 1.1, else FAIL (exit 1).

Also checks that the correct password logs in (200), so (b) really is the
"known account" path, and that both failures answer the same 401 body.

    login_timing.py --base-url http://127.0.0.1:PORT --email E --password P [--trials 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import sys
import time
import urllib.parse

LOW, HIGH = 0.9, 1.1
# Keys of a problem body that may legitimately differ between two requests.
VOLATILE = {"instance", "request_id", "trace_id"}


class Client:
    """One keep-alive HTTP/1.1 connection, reopened if the server closes it."""

    def __init__(self, base_url: str) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.hostname != "127.0.0.1":
            raise SystemExit("only 127.0.0.1 is allowed")
        self.host, self.port = u.hostname, u.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def post_json(self, path: str, body: dict) -> tuple[int, bytes, float]:
        """POST and read the whole answer; returns (status, body, seconds)."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.connect()
            try:
                start = time.perf_counter()
                self.conn.request("POST", path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - start
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, payload, elapsed
            except (http.client.HTTPException, ConnectionError, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def problem(payload: bytes) -> dict:
    try:
        obj = json.loads(payload)
    except ValueError:
        return {"<not json>": payload.decode(errors="replace")}
    return {k: v for k, v in obj.items() if k not in VOLATILE} if isinstance(obj, dict) else obj


def ms(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=10)
    return (
        f"median {statistics.median(xs) * 1e3:8.2f} ms   mean {statistics.fmean(xs) * 1e3:8.2f} ms   "
        f"p10 {q[0] * 1e3:8.2f}   p90 {q[-1] * 1e3:8.2f}   min {min(xs) * 1e3:8.2f}   "
        f"max {max(xs) * 1e3:8.2f}   n={len(xs)}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--email", required=True, help="the known, verified account")
    ap.add_argument("--password", required=True, help="its correct password")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    if args.trials < 30:
        ap.error("--trials must be at least 30")

    client = Client(args.base_url)
    login = "/auth/login"

    def unknown() -> tuple[int, bytes, float]:
        return client.post_json(login, {"email": f"nobody-{secrets.token_hex(6)}@example.com",
                                        "password": f"wrong-{secrets.token_hex(8)}"})

    def wrong() -> tuple[int, bytes, float]:
        return client.post_json(login, {"email": args.email, "password": f"wrong-{secrets.token_hex(8)}"})

    # Sanity: the known account exists, is verified and its password works.
    status, payload, took = client.post_json(login, {"email": args.email, "password": args.password})
    if status != 200:
        print(f"FAIL: correct password for {args.email} answered {status}: {payload[:300]!r}")
        return 1
    print(f"sanity: correct password -> 200 in {took * 1e3:.1f} ms (known account is verified)")

    # Warm-up: connection, pools, caches, the blocking thread pool.
    for _ in range(args.warmup):
        for call in (unknown, wrong):
            call()

    times = {"unknown": [], "wrong": []}
    bodies = {"unknown": set(), "wrong": set()}
    unexpected = []
    for i in range(args.trials):
        order = [("unknown", unknown), ("wrong", wrong)]
        if i % 2:
            order.reverse()
        for name, call in order:
            status, payload, took = call()
            if status != 401:
                unexpected.append((name, status, payload[:200]))
            times[name].append(took)
            bodies[name].add(json.dumps(problem(payload), sort_keys=True))

    print(f"POST /auth/login, {args.trials} interleaved trials each, {args.warmup} warm-up calls each")
    print(f"  (a) unknown email  : {ms(times['unknown'])}")
    print(f"  (b) wrong password : {ms(times['wrong'])}")
    med_u = statistics.median(times["unknown"])
    med_w = statistics.median(times["wrong"])
    ratio = med_u / med_w
    print(f"  ratio unknown/wrong (medians): {ratio:.3f}   (pass band {LOW}..{HIGH})")

    ok = True
    if unexpected:
        ok = False
        print(f"FAIL: {len(unexpected)} answers were not 401, e.g. {unexpected[:3]}")
    if len(bodies["unknown"] | bodies["wrong"]) != 1:
        ok = False
        print("FAIL: the two failures do not answer the same body:")
        for name, seen in bodies.items():
            for b in sorted(seen):
                print(f"    {name}: {b}")
    else:
        print(f"  both answer the same 401 body: {next(iter(bodies['unknown']))}")
    if LOW <= ratio <= HIGH:
        print(f"  timing ratio {ratio:.3f} is within {LOW}..{HIGH}")
    else:
        ok = False
        print(f"FAIL: timing ratio {ratio:.3f} is outside {LOW}..{HIGH}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
