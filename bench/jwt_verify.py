"""Micro-benchmark: what one JWT costs on the request path.

For RS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519) it times, in this process:

- ``first``: ``JwtVerifier.verify`` of a token never seen before (the whole path: size
  check, hash, cache miss, parse, key look-up, signature, claims, cache insert). Every
  call gets a distinct token (a fresh ``jti``), so no call is a cache hit.
- ``cached``: ``verify`` of a token already verified (the hash and one cache look-up).
- ``pyjwt``: ``jwt.decode`` with the same key, issuer and audience, for comparison.

Each is run in ``--rounds`` rounds of ``--tokens`` calls; the table gives the median round's
mean and the p50/p99 of single calls. ``--profile ALG`` prints where a first verification
spends its time (cProfile). Targets (issue 4): first RS256 < 60 µs, cached < 5 µs.

    .venv/bin/python bench/jwt_verify.py
    .venv/bin/python bench/jwt_verify.py --tokens 500 --rounds 3 --json out.json
    .venv/bin/python bench/jwt_verify.py --profile RS256
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from apiward.identity.jwt import JwtConfig, JwtVerifier

ISSUER, AUDIENCE = "https://idp.example", "api"
KEYS = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


def make_setup(directory: Path) -> tuple[dict, Path]:
    """Private keys by algorithm and a JWKS file with their public halves."""
    private, jwks = {}, []
    for alg, generate in KEYS.items():
        key = generate()
        private[alg] = key
        jwk = get_default_algorithms()[alg].to_jwk(key.public_key(), as_dict=True)
        jwks.append({**jwk, "kid": f"kid-{alg}", "alg": alg, "use": "sig"})
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": jwks}))
    return private, path


def make_tokens(key, alg: str, count: int, now: float) -> list[str]:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-123", "iat": int(now),
              "exp": int(now) + 3600, "scope": "read:items write:items"}
    return [pyjwt.encode({**claims, "jti": f"{alg}-{i}"}, key, algorithm=alg,
                         headers={"kid": f"kid-{alg}"}) for i in range(count)]


def verifier(jwks: Path) -> JwtVerifier:
    return JwtVerifier(JwtConfig(jwks_file=jwks, algorithms=list(KEYS), issuer=ISSUER,
                                 audience=AUDIENCE))


def per_call(fn, items) -> list[float]:
    """Seconds of each call."""
    clock, out = time.perf_counter, []
    for item in items:
        start = clock()
        fn(item)
        out.append(clock() - start)
    return out


def summary(rounds: list[list[float]]) -> dict:
    means = sorted(statistics.fmean(r) for r in rounds)
    calls = sorted(t for r in rounds for t in r)
    return {"mean_us": round(means[len(means) // 2] * 1e6, 2),
            "p50_us": round(calls[len(calls) // 2] * 1e6, 2),
            "p99_us": round(calls[int(len(calls) * 0.99)] * 1e6, 2)}


def bench(alg: str, private, jwks: Path, tokens: int, rounds: int) -> dict:
    now = time.time()
    batches = [make_tokens(private[alg], alg, tokens, now) for _ in range(rounds + 1)]
    public = private[alg].public_key()
    first, cached, baseline = [], [], []
    for index, batch in enumerate(batches):
        v = verifier(jwks)  # empty cache
        times = per_call(lambda t, v=v: v.verify(t, now), batch)
        assert v.verifications == len(batch) and v.cache_hits == 0
        if index == 0:
            continue  # warm-up
        first.append(times)
        token = batch[0]
        loop = range(tokens * 20)
        start = time.perf_counter()
        for _ in loop:
            v.verify(token, now)
        cached.append([(time.perf_counter() - start) / len(loop)])
        baseline.append(per_call(lambda t: pyjwt.decode(
            t, public, algorithms=[alg], issuer=ISSUER, audience=AUDIENCE), batch))
    return {"first": summary(first), "cached": summary(cached), "pyjwt": summary(baseline)}


def profile(alg: str, private, jwks: Path, tokens: int) -> None:
    now = time.time()
    batch = make_tokens(private[alg], alg, tokens, now)
    v = verifier(jwks)
    profiler = cProfile.Profile()
    profiler.enable()
    for token in batch:
        v.verify(token, now)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", choices=list(KEYS), help="cProfile one algorithm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        private, jwks = make_setup(Path(tmp))
        if args.profile:
            profile(args.profile, private, jwks, args.tokens)
            return
        results = {alg: bench(alg, private, jwks, args.tokens, args.rounds) for alg in KEYS}
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds x {args.tokens} tokens")
    print(f"{'alg':<7}{'what':<8}{'mean µs':>9}{'p50 µs':>9}{'p99 µs':>9}")
    for alg, result in results.items():
        for what, row in result.items():
            print(f"{alg:<7}{what:<8}{row['mean_us']:>9}{row['p50_us']:>9}{row['p99_us']:>9}")
    if args.json:
        args.json.write_text(json.dumps({"python": platform.python_version(),
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
