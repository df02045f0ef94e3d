"""The 15 streams of the Analytics API, declared in the seeds' own dlt shape.

Offset streams leave `limit` to the `page_size` setting. A user-declared resource
(the `resources` setting) becomes a stream through the same `Resource.from_dlt`.
"""

from __future__ import annotations

from tap_analytics.client import AnalyticsStream
from tap_analytics.resources import Resource

OFFSET = {"type": "offset"}
INCREMENTAL = {"updated_since": {"type": "incremental", "cursor_path": "updated_at"}}


def listing(name: str, path: str, data_selector: str | list, *, paginator: dict | None = None,
            params: dict | None = None, primary_key: str | list = "id") -> Resource:
    return Resource.from_dlt({
        "name": name,
        "primary_key": primary_key,
        "endpoint": {"path": path, "data_selector": data_selector,
                     "paginator": paginator or "single_page", "params": params or {}},
    })


class AccountOverviewStream(AnalyticsStream):
    resource = listing("account_overview", "/v1/account_overview", "data", paginator=OFFSET)


class AgentsOverviewStream(AnalyticsStream):
    resource = listing("agents_overview", "/v1/agents_overview", "data", paginator=OFFSET)


class CurrentQueueActivityStream(AnalyticsStream):
    resource = listing("current_queue_activity", "/v1/current_queue_activity", "data",
                       paginator=OFFSET)


class ConversationsStream(AnalyticsStream):
    resource = listing("conversations", "/v1/conversations", "data", paginator=OFFSET,
                       params=INCREMENTAL)


class ContactsStream(AnalyticsStream):
    resource = listing("contacts", "/v1/contacts", "data", paginator=OFFSET, params=INCREMENTAL)


class ConversationPartsStream(AnalyticsStream):
    resource = listing("conversation_parts", "/v1/conversation_parts", "data", paginator=OFFSET,
                       params=INCREMENTAL)


class TeamsStream(AnalyticsStream):
    resource = listing("teams", "/v1/teams", "data", paginator=OFFSET)


class CompaniesStream(AnalyticsStream):
    resource = listing("companies", "/v1/companies", "data", paginator=OFFSET,
                       params=INCREMENTAL)


class SchemasStream(AnalyticsStream):
    resource = listing("schemas", "/v1/schemas", "objects")


class PeoplesStream(AnalyticsStream):
    resource = listing("peoples", "/v1/people/all", "people", paginator=OFFSET,
                       params=INCREMENTAL)


class AccountsStream(AnalyticsStream):
    resource = listing("accounts", "/v1/accounts", [])


class AccountTagsStream(AnalyticsStream):
    resource = listing("account_tags", "/v1/tags-management", "tags")


class SegmentsStream(AnalyticsStream):
    resource = listing("segments", "/v1/segments", "segments")


class FieldsStream(AnalyticsStream):
    resource = listing("fields", "/v1/fields", "items")


class SegmentPeopleStream(AnalyticsStream):
    resource = listing(
        "segment_people", "/v1/segments/{segment_id}/people", "people", paginator=OFFSET,
        params={"segment_id": {"type": "resolve", "resource": "segments", "field": "id"}},
        primary_key=["segment_id", "id"],
    )


BUILTIN_STREAMS: tuple[type[AnalyticsStream], ...] = (
    AccountOverviewStream, AgentsOverviewStream, CurrentQueueActivityStream,
    ConversationsStream, ContactsStream, ConversationPartsStream, TeamsStream,
    CompaniesStream, SchemasStream, PeoplesStream, AccountsStream, AccountTagsStream,
    SegmentsStream, FieldsStream, SegmentPeopleStream,
)


def stream_class(resource: Resource) -> type[AnalyticsStream]:
    """A stream class for a user-declared resource."""
    class_name = "".join(part.title() for part in resource.name.split("_")) + "Stream"
    return type(class_name, (AnalyticsStream,), {"resource": resource})


def link_parents(classes: list[type[AnalyticsStream]]) -> None:
    """Point each child class at its parent class, found by resource name."""
    by_name = {cls.resource.name: cls for cls in classes}
    for cls in classes:
        if cls.resource.parent is not None:
            cls.parent_stream_type = by_name[cls.resource.parent.resource]
