"""What a `source` account sees of its own call (issue 16, item 6): its call, result and
progress, but no delivery internals: no destination answers (`response_excerpt`), delivery
errors, destination names or AI error texts, in the call, the list or the timeline. Staff see
everything."""

from __future__ import annotations

import uuid

from calls_helpers import BASE, make_call, make_delivery, make_destination

LEAKS = ("internal-crm-secret", "10.0.0.7", "crm-internal", "ai-backend.corp")


def delivered_call_with_internals(source) -> uuid.UUID:
    """A call whose delivery went wrong once (the destination's answer is stored), whose
    timeline holds the delivery's retry and an AI failure text."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import DeliveryAttempt, TimelineEntry

    call_id = make_call(source, status="delivered", external_id="pbx-1")
    dest = make_destination("crm-internal", url="http://10.0.0.7/hook")
    delivery = make_delivery(call_id, dest, status="delivered", attempts=2)
    with unit_of_work() as session:
        session.add_all(
            [
                DeliveryAttempt(
                    delivery_id=delivery, number=1, status_code=500,
                    response_excerpt="Traceback: internal-crm-secret at 10.0.0.7",
                    error="HTTP 500", latency_ms=12.0,
                ),
                DeliveryAttempt(
                    delivery_id=delivery, number=2, status_code=204, response_excerpt="",
                    latency_ms=8.0,
                ),
                TimelineEntry(
                    call_id=call_id, stage="call-ai", event="ai_retry_scheduled",
                    detail={"reason": "connection to ai-backend.corp refused"},
                ),
                TimelineEntry(
                    call_id=call_id, stage="deliver", event="delivery_retry_scheduled",
                    detail={"status_code": 500, "destination": "crm-internal"},
                ),
                TimelineEntry(call_id=call_id, stage="ingest", event="received", detail={"n": 1}),
            ]
        )  # fmt: skip
    return call_id


def failed_call(source) -> uuid.UUID:
    return make_call(source, status="failed", error=("call-ai", "ai_rejected"))


def test_a_source_sees_its_call_without_delivery_internals(client, people):
    call_id = delivered_call_with_internals(people["src"])
    body = client.get(f"{BASE}/calls/{call_id}", headers=people["src"].headers).get_json()
    assert body["status"] == "delivered" and body["external_id"] == "pbx-1"
    assert body["attempts"] == []
    assert body["deliveries"] == [
        {"webhook_id": body["deliveries"][0]["webhook_id"], "status": "delivered",
         "delivered_at": None}
    ]  # fmt: skip
    by_stage = {(t["stage"], t["event"]): t["detail"] for t in body["timeline"]}
    assert by_stage[("ingest", "received")] == {"n": 1}  # its own upload: kept
    assert by_stage[("call-ai", "ai_retry_scheduled")] is None
    assert by_stage[("deliver", "delivery_retry_scheduled")] is None
    for leak in LEAKS:
        assert leak not in str(body), leak


def test_staff_see_the_delivery_internals(client, people):
    call_id = delivered_call_with_internals(people["src"])
    body = client.get(f"{BASE}/calls/{call_id}", headers=people["viewer"].headers).get_json()
    assert [a["response_excerpt"] for a in body["attempts"]][0].startswith("Traceback")
    assert body["deliveries"][0]["destination"] == "crm-internal"


def test_both_views_are_what_the_api_description_says(client, people):
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    from call_downloader.api.openapi import document

    registry = Registry().with_resource("urn:api", DRAFT202012.create_resource(document()))
    validator = Draft202012Validator(
        {"$ref": "urn:api#/components/schemas/CallDetail"}, registry=registry
    )
    call_id = delivered_call_with_internals(people["src"])
    for who in ("src", "viewer"):
        body = client.get(f"{BASE}/calls/{call_id}", headers=people[who].headers).get_json()
        assert [e.message for e in validator.iter_errors(body)] == [], who


def test_a_failed_calls_ai_error_text_is_hidden_from_its_source(client, people):
    call_id = failed_call(people["src"])
    own = client.get(f"{BASE}/calls/{call_id}", headers=people["src"].headers).get_json()
    assert own["error"] == {"stage": "call-ai", "reason": "ai_rejected", "message": None}
    listed = client.get(f"{BASE}/calls", headers=people["src"].headers).get_json()["items"]
    assert [item["error"] for item in listed] == [own["error"]]
    staff = client.get(f"{BASE}/calls/{call_id}", headers=people["admin"].headers).get_json()
    assert staff["error"]["message"] == "ai_rejected (test)"


def test_a_source_still_reads_why_its_upload_was_refused(client, people):
    call_id = make_call(people["src"], status="failed", error=("analyze-duration", "invalid_audio"))
    own = client.get(f"{BASE}/calls/{call_id}", headers=people["src"].headers).get_json()
    assert own["error"]["message"] == "invalid_audio (test)"  # about its own bytes
