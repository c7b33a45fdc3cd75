"""User components: a model, data set or loss given as ``FILE.py:NAME`` or
``package.module:NAME`` wherever eoskit takes a built-in name.

* :mod:`~eoskit.components.imports`: resolving a spec, hashing its file
* :mod:`~eoskit.components.user`: the model, data set and loss conventions
* :mod:`~eoskit.components.record`: what ``config.json`` records, the unchanged-file check
"""

from eoskit.components.imports import (
    ComponentError,
    Imported,
    absolute_spec,
    import_target,
    is_spec,
)
from eoskit.components.record import (
    ComponentChanged,
    check_files,
    check_unchanged,
    record_of,
    spec_record,
)
from eoskit.components.user import accepted_kwargs, user_dataset, user_loss, user_model

__all__ = [
    # resolving
    "ComponentError",
    "Imported",
    "absolute_spec",
    "import_target",
    "is_spec",
    # conventions
    "accepted_kwargs",
    "user_dataset",
    "user_loss",
    "user_model",
    # recording
    "ComponentChanged",
    "check_files",
    "check_unchanged",
    "record_of",
    "spec_record",
]
