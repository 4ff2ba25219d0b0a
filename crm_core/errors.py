"""Errors of the CRM's own services.

They are permanent errors in the one error tree: a message that names an order the CRM does not
have, or links a customer to a second ERP number, cannot succeed on a retry, so it goes to the
dead letter channel with this reason at once.
"""

from __future__ import annotations

from canonical_model.errors import PermanentError


class CrmError(PermanentError):
    """Base of the CRM service errors."""


class NotFound(CrmError):
    def __init__(self, entity: str, key: str) -> None:
        super().__init__(f"{entity} {key!r} not found")
        self.entity = entity
        self.key = key


class InvalidRequest(CrmError):
    """The request names a value the CRM cannot accept; ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CrossReferenceConflict(InvalidRequest):
    """A cross-reference that contradicts one the CRM already holds (permanent: a retry gives the same ids).

    Two shapes, both naming the other system, the entity, both CRM ids and the external ids:

    - the other system gave ``external_id`` for ``crm_id``, but the CRM links that external id to
      ``linked_crm_id`` (another CRM object): the other system reuses its numbers, typically because
      its data was reset or restored while the CRM's was kept. The link of ``linked_crm_id`` is then
      stale too: the other system now uses its number for another object;
    - ``crm_id`` is already linked to ``linked_external_id`` and the other system now says ``external_id``.

    Neither link is changed: which one is right is an operator's decision.
    """

    def __init__(
        self,
        system: str,
        entity: str,
        *,
        crm_id: str,
        external_id: str,
        linked_crm_id: str,
        linked_external_id: str,
    ) -> None:
        if linked_crm_id != crm_id:
            message = (
                f"{system} {entity} {external_id} for CRM {crm_id} is already linked to CRM {linked_crm_id}: "
                f"the {system} reuses its numbers (was its data reset or restored?), "
                f"so the link {linked_crm_id} -> {linked_external_id} is stale"
            )
        else:
            message = f"CRM {crm_id} is already linked to {system} {entity} {linked_external_id}, not {external_id}"
        super().__init__(f"{system}.{entity}", f"cross-reference conflict: {message}")
        # not EsbError.system (where an error arose): the system whose ids conflict
        self.external_system = system
        self.entity = entity
        self.crm_id = crm_id
        self.external_id = external_id
        self.linked_crm_id = linked_crm_id
        self.linked_external_id = linked_external_id


class StaleCrossReference(CrmError):
    """The CRM links ``crm_id`` to ``external_id``, but the other system's ``external_id`` is not that
    object any more: another CRM object's (``actual_crm_id``) or nothing at all (``actual_crm_id`` None).
    The other system's data was reset or restored while the CRM's was kept; sending on under the old
    number would book to the wrong account. Permanent: an operator fixes the link, then replays.
    """

    def __init__(self, system: str, entity: str, *, crm_id: str, external_id: str, actual_crm_id: str | None) -> None:
        now = f"belongs to CRM {actual_crm_id}" if actual_crm_id else "does not exist"
        super().__init__(
            f"the CRM links {entity} {crm_id} to {system} {entity} {external_id}, but in the {system} "
            f"{external_id} {now}: the {system}'s data was reset or restored; correct or remove the link, "
            "then replay"
        )
        self.external_system = system
        self.entity = entity
        self.crm_id = crm_id
        self.external_id = external_id
        self.actual_crm_id = actual_crm_id
