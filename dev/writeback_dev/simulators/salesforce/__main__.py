"""`python -m writeback_dev.simulators.salesforce --port 8600`: the simulator on the calling thread."""

from __future__ import annotations

import argparse
import os

from .server import SalesforceSim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Salesforce REST API simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--client-id", default=os.environ.get("SALESFORCE_SIM_CLIENT_ID", "sim-client-id"))
    parser.add_argument(
        "--client-secret", default=os.environ.get("SALESFORCE_SIM_CLIENT_SECRET", "sim-client-secret")
    )
    parser.add_argument("--seed-contacts", type=int, default=0, help="create this many Contacts at start")
    args = parser.parse_args(argv)
    sim = SalesforceSim(
        client_id=args.client_id, client_secret=args.client_secret, host=args.host, port=args.port
    )
    for n in range(args.seed_contacts):
        print(sim.add_contact(last_name=f"Seeded {n}"), flush=True)
    print(f"Salesforce simulator on http://{args.host}:{args.port} (client id {args.client_id})", flush=True)
    sim.serve_forever()


if __name__ == "__main__":
    main()
