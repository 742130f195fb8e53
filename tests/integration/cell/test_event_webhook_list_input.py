"""Bad input to the lists of events, webhook endpoints and webhook deliveries: each is a 400 problem+json with a stable
code naming what is wrong, never a 5xx (malformed or out-of-range times, page sizes, unknown filters, forged cursors,
characters PostgreSQL cannot hold)."""

import pytest

EVENTS, ENDPOINTS, DELIVERIES = "/api/events", "/api/webhook_endpoints", "/api/webhook_deliveries"
CASES = [
    (EVENTS, {"event_time_start": "yesterday"}, "invalid_parameter"),
    (EVENTS, {"event_time_end": "2026-13-45T99:99:99Z"}, "invalid_parameter"),
    (EVENTS, {"event_time_end": "2026-01-01T00:00:00"}, "invalid_parameter"),  # no time zone
    (EVENTS, {"event_time_end": "2026-01-01T00:00:00+25:00"}, "invalid_parameter"),
    (EVENTS, {"event_time_start": "0001-01-01T00:00:00+01:00"}, "timestamp_out_of_range"),
    (EVENTS, {"event_time_end": "9999-12-31T23:59:59-01:00"}, "timestamp_out_of_range"),
    (EVENTS, {"event_time_end": "x" * 5000}, "invalid_parameter"),
    (EVENTS, {"entity_id": "not-a-uuid"}, "invalid_parameter"),
    (EVENTS, {"event_name": "a\u0000b"}, "invalid_parameter"),
    (EVENTS, {"resource": "\u0000"}, "invalid_parameter"),
    (EVENTS, {"event_name": "x" * 129}, "invalid_parameter"),
    (EVENTS, {"colour": "red"}, "unknown_parameter"),
    (EVENTS, {"event_time[gte]": "2026-01-01T00:00:00Z"}, "unknown_parameter"),
    *[(path, params, code) for path in (EVENTS, ENDPOINTS, DELIVERIES) for params, code in (
        ({"per_page": "9" * 50}, "invalid_parameter"), ({"per_page": "1000001"}, "invalid_parameter"),
        ({"per_page": "0"}, "invalid_parameter"), ({"per_page": "-1"}, "invalid_parameter"),
        ({"per_page": "1e3"}, "invalid_parameter"), ({"after_cursor": "garbage"}, "invalid_cursor"),
        ({"after_cursor": "W1000000000000000000000000000000000000000XQ"}, "invalid_cursor"),
        ({"after_cursor": "\u0000"}, "invalid_parameter"), ({"after_cursor": "A" * 10_000}, "invalid_cursor"),
        ({"nope": "1"}, "unknown_parameter"))],
    (DELIVERIES, {"endpoint_id": "\u0000"}, "invalid_parameter"),
    (DELIVERIES, {"status": "delivered"}, "invalid_parameter"),
    (DELIVERIES, {"status": "\u0000"}, "invalid_parameter"),
    (DELIVERIES, {"webhook_endpoint_id": "x"}, "unknown_parameter"),
]


@pytest.mark.parametrize(("path", "params", "code"), CASES)
async def test_bad_list_input_is_a_400_problem_with_a_stable_code(api, path, params, code):
    r = await api.get(path, params=params)
    assert r.status_code == 400, (path, params, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, (path, params, r.text)


async def test_a_cursor_of_another_list_does_not_open(api):
    """A cursor sealed for the endpoints list is refused by the deliveries list (and the events list), not read as a
    position of theirs."""
    for i in range(2):
        r = await api.post(ENDPOINTS, {"url": f"https://93.184.216.34/hook{i}"})
        assert r.status_code == 201, r.text
    cursor = (await api.get(ENDPOINTS, params={"per_page": 1})).headers["x-after-cursor"]
    for path in (DELIVERIES, EVENTS):
        r = await api.get(path, params={"after_cursor": cursor})
        assert r.status_code == 400 and r.json()["code"] == "invalid_cursor", (path, r.text)
