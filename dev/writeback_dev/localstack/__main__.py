"""`python -m writeback_dev.localstack` (what `make stack-build` runs): fetch and build the
stack's jars ahead of a run."""

from writeback_dev.localstack import kafka, registry

if __name__ == "__main__":
    print(f"kafka jars: {kafka.ensure_jars()}")
    print(f"schema registry: {registry.ensure_built()}")
