"""Sandbox emulation for Clang batch: the same Clang SOAP API as Clang real-time (see clang_sandbox.py).

One API, one emulation named "clang": Clang real-time's sandbox module (earlier in the catalogue) answers every
Clang request, batch traffic included. This module shares the name and functions, so statistics and faults of both
connectors meet under "clang"; it lists no endpoint of its own, to avoid showing the same one twice.
"""

from connectors.partners.clang_sandbox import (  # noqa: F401 - the sandbox server reads these names
    NAME,
    apply_stats,
    export_profiles,
    export_stats,
    fault_response,
    handle,
    match,
    new_stats,
)

ENDPOINTS = ()
