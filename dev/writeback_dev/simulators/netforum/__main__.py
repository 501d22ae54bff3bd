"""`python -m writeback_dev.simulators.netforum --port 8700`: the simulator on the calling thread."""

from __future__ import annotations

import argparse
import os

from .server import DEFAULT_PASSWORD, DEFAULT_USER, NetforumSim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="netFORUM Enterprise xWeb SOAP simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--user", default=os.environ.get("NETFORUM_SIM_USER", DEFAULT_USER))
    parser.add_argument("--password", default=os.environ.get("NETFORUM_SIM_PASSWORD", DEFAULT_PASSWORD))
    parser.add_argument("--fault-limit", type=int, default=100, help="MethodsFaultLimitPerDay")
    parser.add_argument("--token-timeout", type=float, default=20 * 60, help="seconds")
    parser.add_argument(
        "--seed-individuals", type=int, default=0, help="create this many Individuals at start"
    )
    args = parser.parse_args(argv)
    sim = NetforumSim(
        user=args.user,
        password=args.password,
        host=args.host,
        port=args.port,
        fault_limit_per_day=args.fault_limit,
        token_timeout=args.token_timeout,
    )
    for n in range(args.seed_individuals):
        print(sim.add_individual("Seeded", f"Individual {n}", f"seeded{n}@example.org"), flush=True)
    print(f"netFORUM xWeb simulator on http://{args.host}:{args.port} (user {args.user})", flush=True)
    sim.serve_forever()


if __name__ == "__main__":
    main()
