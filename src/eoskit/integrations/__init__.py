"""eoskit in other frameworks, each an optional extra imported on use.

* :mod:`~eoskit.integrations.lightning`: ``SharpnessCallback`` for PyTorch Lightning.
* :mod:`~eoskit.integrations.transformers`: ``SharpnessCallback`` for the Hugging Face
  ``Trainer``.

Nothing here is imported by this package's ``__init__``: importing
``eoskit.integrations`` needs none of those libraries.
"""
