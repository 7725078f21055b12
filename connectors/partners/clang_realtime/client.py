"""Clang real-time client: each profile change is its own short set of SOAP calls, made as soon as it is due.

Add / update (one call set per profile):
  1. customer_getByExternalId (identifier slot "customer_id") or customer_getByEmailAddress (slot "email");
  2. customer_update of the first customer found, with the profile variables mapped to customer fields (skipped when
     there is nothing but the identifier to write), or customer_insert when none was found;
  3. group_addMember (fault 107 "customer already member" counts as done).
Remove: the lookup, then group_removeMember for each customer found (Clang has no bulk removal); a profile Clang
does not know, or a customer that is not a member, counts as removed.

The group is the audience connection's partner audience id when it is set (a numeric Clang group id: one
configuration can feed several groups), else the configuration's group id. Profile variables whose names match a
Clang customer field (case and "_" ignored, plus a few aliases such as first_name, email, phone, zip) fill that
field; the others become customer options (Clang's custom fields). The call sets of one send run concurrently on a
small thread pool; each item appears in exactly one CallResult, which sums its calls' time and shows the last status.
Once Clang refuses the uuid, the call sets not yet started are not made: their items wait ("not_sent", retryable)
while the configuration is paused, instead of each failing on the same refusal.
"""

from __future__ import annotations

from connectors.delivery.types import Action, CallResult, Item
from connectors.partners.clang_realtime.descriptor import PARTNER
from connectors.partners.clang_soap import ClangClient


class Client(ClangClient):
    partner = PARTNER
    max_workers = 16

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        self.begin()
        ready, calls = self.prepare(items)
        if action == Action.REMOVE:
            jobs = [self.guard([i], lambda i=i, it=it, v=v, g=g: self.remove_one(i, it, v, g)) for i, it, v, g in ready]
        else:
            jobs = [
                self.guard([i], lambda i=i, it=it, v=v, g=g: self.add_one(action, i, it, v, g)) for i, it, v, g in ready
            ]
        return calls + self.run_each(jobs)
