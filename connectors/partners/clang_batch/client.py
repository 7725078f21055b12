"""Clang batch client: new and modified profiles in bulk SOAP calls, removed ones one by one.

The dispatcher holds this partner's rows until `min_batch_size` are due or the oldest has waited
`batch_interval_seconds` (descriptor limits: about 500 every 20 minutes), then hands them over in sends of at most
500 items of one action.

Add / update (NEW and MODIFIED records), per chunk of at most 500 distinct identifiers:
  1. customer_insertBulkUnique(customers, uniqueCustomerFields=[externalId | emailAddress], uniqueOptionFields=[]):
     Clang stores (inserts or updates, matched on the unique field) the customers with the profile variables mapped
     to customer fields and answers the stored customers. Each sent record is matched back to its answer by the
     unique field; a record missing from the answer is a per-row partner error ("not_stored").
  2. group_addMembersInBulk(group, customers=[{id}…]) per target group. When Clang answers fault 107 (one of them
     was already a member) the answer does not say which, nor whether the others were added: that group's members
     then go one by one (group_addMember, 107 = done).
Remove (REMOVED records): no bulk removal exists, so each profile is looked up and taken out with
group_removeMember, exactly as in real time (a few concurrent call sets).

Each item appears in exactly one CallResult: the insert call is folded into the first group call's result (or into
the result of the rows it did not store), so time and status stay accounted for.
"""

from __future__ import annotations

from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.identifiers import Slot
from connectors.models import Outcome
from connectors.partners.clang_batch.descriptor import PARTNER
from connectors.partners.clang_soap import (
    MAX_BULK,
    SLOT_FIELDS,
    CallSet,
    ClangClient,
    Failure,
    Items,
    Reply,
    boolean,
    entries,
    is_already_member,
    make_failure,
    struct,
)


class Client(ClangClient):
    partner = PARTNER
    max_workers = 4  # removals: a few at a time, gentle on the account's API

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        self.begin()
        ready, calls = self.prepare(items)
        if action == Action.REMOVE:
            jobs = [self.guard([i], lambda i=i, it=it, v=v, g=g: self.remove_one(i, it, v, g)) for i, it, v, g in ready]
            return calls + self.run_each(jobs)
        # Chunks of at most MAX_BULK distinct identifiers (two profiles may share one email address).
        chunks: list[list[tuple[int, Item, str, int]]] = [[]]
        distinct: set[str] = set()
        for entry in ready:
            if entry[2] not in distinct and len(distinct) == MAX_BULK:
                chunks.append([])
                distinct = set()
            chunks[-1].append(entry)
            distinct.add(entry[2])
        for chunk in chunks:
            if not chunk:
                continue
            if self.refused:
                calls.append(self.deferred([index for index, *_ in chunk]))
            else:
                calls += self.bulk_add(action, chunk)
        return calls

    def _key(self, value: str) -> str:
        return value.lower() if self._slot == Slot.EMAIL else value

    def bulk_add(self, action: str, chunk: list[tuple[int, Item, str, int]]) -> list[CallResult]:
        id_field = SLOT_FIELDS[self._slot][0]
        records: dict[str, dict] = {}
        for _index, item, value, _group in chunk:
            records[value] = self.customer_record(value, item.variables)  # the newest variables win
        values = list(records)
        indices = [index for index, *_ in chunk]
        insert = self.invoke(
            indices,
            "customer_insertBulkUnique",
            [
                ("customers", Items("Customer", records.values())),
                ("uniqueCustomerFields", Items("string", [id_field])),
                ("uniqueOptionFields", Items("string", [])),
            ],
            hide=values,
        )
        if insert.failure:
            calls = CallSet([insert])
            return [calls.result(indices, [insert.failure.result] * len(indices), insert.failure)]

        ids = self._stored_ids(values, [struct(e) for e in entries(insert.answer.msg)], id_field)
        insert.note = f"customer_insertBulkUnique: {len(ids)} of {len(values)} stored"
        out: list[CallResult] = []
        pending: list[Reply] = [insert]  # folded into the next CallResult made
        missing = [index for index, _item, value, _group in chunk if self._key(value) not in ids]
        if missing:
            failure = make_failure(
                Outcome.PARTNER_ERROR, "not_stored", "Clang's bulk answer did not include this customer"
            )
            out.append(CallSet(pending).result(missing, [failure.result] * len(missing), failure))
            pending = []
        by_group: dict[int, list[tuple[int, str]]] = {}
        for index, _item, value, group in chunk:
            customer_id = ids.get(self._key(value))
            if customer_id:
                by_group.setdefault(group, []).append((index, customer_id))
        for group, members in by_group.items():
            if self.refused:  # the uuid was refused meanwhile: these members wait
                out.append(self.deferred([index for index, _ in members]))
                continue
            out.append(self._add_members(action, group, members, pending))
            pending = []
        return out

    def _stored_ids(self, values: list[str], stored: list[dict[str, str]], id_field: str) -> dict[str, str]:
        """identifier key -> Clang customer id, from the bulk answer (by the unique field; by position when the
        answer leaves the field out but holds one customer per record)."""
        ids: dict[str, str] = {}
        if stored and not any(c.get(id_field) for c in stored) and len(stored) == len(values):
            for value, entry in zip(values, stored, strict=True):
                if entry.get("id"):
                    ids[self._key(value)] = entry["id"]
            return ids
        for entry in stored:
            key = entry.get(id_field, "").strip()
            if key and entry.get("id"):
                ids.setdefault(self._key(key), entry["id"])
        return ids

    def _add_members(self, action: str, group: int, members: list[tuple[int, str]], pending: list[Reply]):
        calls = CallSet(list(pending))
        indices = [index for index, _ in members]
        customer_ids = list(dict.fromkeys(customer_id for _, customer_id in members))
        params = [("group", {"id": group}), ("customers", Items("Customer", [{"id": c} for c in customer_ids]))]
        reply = calls.add(self.invoke(indices, "group_addMembersInBulk", params))
        if is_already_member(reply.fault):
            return self._one_by_one(calls, reply, action, group, members, customer_ids)
        if reply.failure:
            return calls.result(indices, [reply.failure.result] * len(indices), reply.failure)
        if boolean(reply.answer.msg) is False:
            failure = make_failure(Outcome.PARTNER_ERROR, "not_added", "Clang answered false to group_addMembersInBulk")
            return calls.result(indices, [failure.result] * len(indices), failure)
        return calls.result(indices, [ItemResult.ok(action)] * len(indices))

    def _one_by_one(self, calls: CallSet, bulk: Reply, action: str, group: int, members, customer_ids) -> CallResult:
        outcome: dict[str, tuple[ItemResult, Failure | None]] = {}
        first_failure: Failure | None = None
        added = already = tried = 0
        for customer_id in customer_ids:
            tried += 1
            reply = calls.add(
                self.invoke([0], "group_addMember", [("group", {"id": group}), ("customer", {"id": customer_id})])
            )
            if is_already_member(reply.fault) or not reply.failure:
                reply.note = ""  # summed up below; failures keep their own note
            if is_already_member(reply.fault):
                outcome[customer_id] = (ItemResult.ok(action), None)
                already += 1
            elif reply.failure:
                outcome[customer_id] = (reply.failure.result, reply.failure)
                first_failure = first_failure or reply.failure
                if reply.failure.credentials_invalid:
                    break  # the rest would fail the same way
            elif boolean(reply.answer.msg) is False:
                failure = make_failure(Outcome.PARTNER_ERROR, "not_added", "Clang answered false to group_addMember")
                outcome[customer_id] = (failure.result, failure)
                first_failure = first_failure or failure
            else:
                outcome[customer_id] = (ItemResult.ok(action), None)
                added += 1
        bulk.note = (
            f"group_addMembersInBulk: fault 107 (someone was already a member), so one by one: "
            f"group_addMember x{tried}: {added} added, {already} already members"
        )
        skipped = first_failure.result if first_failure else None
        results = [outcome.get(customer_id, (skipped, None))[0] for _, customer_id in members]
        return calls.result([index for index, _ in members], results, first_failure)
