"""`python -m writeback_dev.simulators.community --port 8800`: the simulator on the calling thread."""

from __future__ import annotations

import argparse
import json
import os

from .server import DEFAULT_IAM_KEY, DEFAULT_PASSWORD, CommunitySim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Community REST API v2.0 simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--iam-key", default=os.environ.get("COMMUNITY_SIM_IAM_KEY", DEFAULT_IAM_KEY))
    parser.add_argument("--password", default=os.environ.get("COMMUNITY_SIM_PASSWORD", DEFAULT_PASSWORD))
    parser.add_argument(
        "--seed", action="store_true", help="load the reconciliation seed (see seed_reconciliation)"
    )
    args = parser.parse_args(argv)
    sim = CommunitySim(iam_key=args.iam_key, password=args.password, host=args.host, port=args.port)
    if args.seed:
        print(json.dumps(sim.seed_reconciliation(), indent=2), flush=True)
    print(f"Community API simulator on http://{args.host}:{args.port} (HLIAMKey {args.iam_key})", flush=True)
    sim.serve_forever()


if __name__ == "__main__":
    main()
