"""Every optional peer eoskit's extras install, imported in one process.

Extras must never break each other (a PyPI torchvision beside a CPU torch once broke
``import lightning``); CI runs this after installing them all. Prints one line per
package with its version; exits 1 naming the first that fails to import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# import name -> the extra that installs it
PEERS = {
    "torch": "(required)",
    "lightning": "lightning",
    "transformers": "transformers",
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
    "wandb": "wandb",
    "curvlinops": "bench (+ pip install --no-deps curvlinops-for-pytorch)",
    "pyhessian": "bench",
}


def main() -> int:
    failed = 0
    for name, extra in PEERS.items():
        try:
            module = importlib.import_module(name)
        except Exception as err:  # any import failure is the finding, whatever its type
            print(f"FAIL {name:13s} [{extra}]: {type(err).__name__}: {err}".splitlines()[0])
            failed += 1
            continue
        print(f"ok   {name:13s} {getattr(module, '__version__', '?')}")
    if importlib.util.find_spec("torchvision") is not None:
        print("note torchvision is installed (no eoskit extra needs it)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
