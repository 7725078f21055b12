"""Sandbox emulation for Clang real-time: Clang's SOAP API, shared with Clang batch (see clang_sandbox.py).

Both connectors call the same Clang endpoint, so one emulation serves them and counts their traffic under the name
"clang". This module is the one that answers (it comes first in the catalogue); clang_batch's re-exports the same
functions without listing the endpoint twice.
"""

from connectors.partners.clang_sandbox import (  # noqa: F401 - the sandbox server reads these names
    ENDPOINTS,
    NAME,
    apply_stats,
    export_profiles,
    export_stats,
    fault_response,
    handle,
    match,
    new_stats,
)
