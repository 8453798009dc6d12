"""Rendering records to the JSON text the API serves (the serving hot path).

Objects are assembled from pre-serialised fragments (supporters, messages, campaigns) and
vectorised timestamp columns, never through a dict, so a page of 1000 costs a few numpy calls
and one f-string per record. The key order is fixed; the same world gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from pipelines.simulator import pools
from pipelines.simulator.catalog import Catalog
from pipelines.simulator.schema import (
    CAMPAIGN_BASE,
    DELIVERED,
    FAILED,
    INBOUND,
    INBOUND_DIRECTION,
    OUTBOUND_DIRECTION,
    REJECTED,
    SUPPORTER_BASE,
    UNDELIVERED,
    Rows,
    Store,
)
from pipelines.simulator.state import Derived
from pipelines.simulator.timefmt import FORMS_PER_GROUP, NEVER, render_json


def objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of `values` (never a 2-d array, whatever the values)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def js(value: Any) -> str:
    """`value` as JSON text."""
    return orjson.dumps(value).decode()


def _price(segments: int) -> str:
    return f"-{0.0079 * segments:.5f}"


_CARRIERS_JSON = objects([js(c) for c in pools.CARRIERS])
_NUMBERS = objects(pools.ORG_NUMBERS)
_BOOLS = objects(["false", "true"])
_EXTRAS = objects(
    ["{}", '{"source":"quorum_outreach"}']
    + [f'{{"tags":["gotv","2026"],"list_id":{17 + i}}}' for i in range(5)]
)
# err is -1 for "no error", where numpy's -1 picks the last entry: harmless, because only
# failed, undelivered and rejected events (which always have an error) show it.
_ERROR_CODES = objects([code for code, _ in pools.ERRORS])
_ERROR_MESSAGES_JSON = objects([js(text) for _, text in pools.ERRORS])
_PRICES = {n: _price(n) for n in range(1, 11)}


class Renderer:
    """Turns rows into SendSMS JSON text; caches the catalog's fragments as JSON."""

    def __init__(self, catalog: Catalog) -> None:
        """Pre-serialise the supporters (they never change after generation)."""
        self.catalog = catalog
        self._table_key: tuple[int, int] = (-1, -1)
        self._table_cache: dict[str, np.ndarray] = {}
        self._supporter_fragments()

    def _tables(self) -> dict[str, np.ndarray]:
        """JSON fragments of the lookup tables, so a page gathers them in one numpy call."""
        cat = self.catalog
        key = (len(cat.messages), len(cat.camp_desc))
        if self._table_key != key:
            n_camp = len(cat.camp_desc)
            self._table_cache = {
                "msg": objects([js(m) for m in cat.messages]),
                "seg": np.asarray(cat.msg_segments, dtype=np.int64),
                # index camp + 1: position 0 is "no campaign"
                "camp": objects(
                    ['"bulk_sms":null,"bulk_sms_description":null']
                    + [
                        f'"bulk_sms":"/api/bulksms/{CAMPAIGN_BASE + i}/",'
                        f'"bulk_sms_description":{js(cat.camp_desc[i])}'
                        for i in range(n_camp)
                    ]
                ),
            }
            self._table_key = key
        return self._table_cache

    def _supporter_fragments(self) -> None:
        """Pre-serialise each supporter's fields and recipient dicts (4 variants) as JSON."""
        cat = self.catalog
        n_sup = cat.n_supporters
        self._sup_json = objects(
            [
                f'"supporter_id":"/api/newsupporter/{SUPPORTER_BASE + i}/",'
                f'"supporter_name":{js(cat.sup_name[i])},'
                f'"supporter_email":{js(cat.sup_email[i])},'
                f'"supporter_title":{js(cat.sup_title[i])},'
                f'"supporter_public_organization":{js(cat.sup_org[i])}'
                for i in range(n_sup)
            ]
        )
        rcpt: list[str] = []
        for variant in range(4):
            for i in range(n_sup):
                phone = cat.sup_phone[i]
                first, last = js(cat.sup_first[i]), js(cat.sup_last[i])
                if variant == 0:
                    text = f'{{"phone_number":"{phone}","first_name":{first},"last_name":{last}}}'
                elif variant == 1:
                    text = (f'{{"phone_number":"{phone}","first_name":{first},'
                            f'"last_name":{last},"zip":"{cat.sup_zip[i]}"}}')
                elif variant == 2:
                    text = (f'{{"phone":"{phone}","name":{js(cat.sup_name[i])},'
                            f'"email":{js(cat.sup_email[i])}}}')
                else:
                    text = (f'{{"phone_number":"{phone}",'
                            f'"custom_fields":{{"district":"D-{i % 40 + 1}"}}}}')
                rcpt.append(text)
        self._rcpt_json = objects(rcpt)

    def render(self, store: Store, d: Derived, rows: Rows,
               bad_updated: Callable[[int], bool] | None = None) -> list[str]:
        """The JSON text of each row's SendSMS object, in the order of `rows`.

        Args:
            store: the plans.
            d: the state at the clock.
            rows: the rows to render.
            bad_updated: ids for which it is true get `"updated": "not-a-date"` (a fault).
        """
        if not len(rows):
            return []
        s = store
        cat = self.catalog
        tables = self._tables()
        fmt = s["fmt"][rows].astype(np.int64)
        group = np.where(s["whole"][rows], FORMS_PER_GROUP, 0)

        def forms(field_index: int) -> np.ndarray:
            return group + (fmt + field_index) % FORMS_PER_GROUP

        created = s["created"][rows]
        camp = s["camp"][rows].astype(np.int64)
        camp_time = (
            np.where(camp >= 0, cat.camp_time[np.maximum(camp, 0)], NEVER)
            if len(cat.camp_time) else np.full(len(rows), NEVER, np.int64)
        )
        inbound = s["kind"][rows] == INBOUND
        c_created = render_json(created, forms(0))
        c_updated = render_json(d.updated[rows], forms(1))
        c_timestamp = render_json(created, forms(2))
        c_send_time = render_json(d.send_time[rows], forms(3))
        c_camp_time = render_json(camp_time, forms(1))
        c_queued = render_json(np.where(inbound, NEVER, created), forms(3))
        c_sent = render_json(d.sent_at[rows], forms(2))
        c_final = render_json(d.final_at[rows], forms(0))
        ids = s["id"][rows].tolist()
        if bad_updated is not None:
            c_updated = [
                '"not-a-date"' if bad_updated(i) else u for i, u in zip(ids, c_updated, strict=True)
            ]
        sup = s["sup"][rows].astype(np.int64)
        msg = s["msg"][rows]
        segs = tables["seg"][msg].tolist()
        final_status = np.where(d.final_at[rows] != NEVER, s["fstatus"][rows], 0).tolist()
        flags = s["flags"][rows].tolist()
        carriers = _CARRIERS_JSON[cat.sup_carrier[sup]].tolist()
        errs = s["err"][rows].astype(np.int64)
        err_codes = _ERROR_CODES[errs].tolist()
        err_msgs = _ERROR_MESSAGES_JSON[errs].tolist()
        raw = np.empty((len(rows), 2), dtype=">u8")
        raw[:, 0] = s["uuid_hi"][rows]
        raw[:, 1] = s["uuid_lo"][rows]
        hexall = raw.tobytes().hex()
        hexes = [hexall[i : i + 32] for i in range(0, len(hexall), 32)]
        queued = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"provider_sid":"SM{h}"}}' if f & 1 else f'{{"timestamp":{t}}}'
            )
            for t, f, h in zip(c_queued, flags, hexes, strict=True)
        ]
        sent = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"carrier":{c},"price":"{_PRICES.get(n) or _price(n)}",'
                f'"price_unit":"USD"}}' if f & 2 else f'{{"timestamp":{t},"carrier":{c}}}'
            )
            for t, f, c, n in zip(c_sent, flags, carriers, segs, strict=True)
        ]
        final = [
            "{}" if t == "null" else (
                f'{{"timestamp":{t},"carrier":{c}}}' if st == DELIVERED
                else f'{{"timestamp":{t},"error_code":{code},"error_message":{text}}}'
                if st == REJECTED and not f & 4
                else f'{{"timestamp":{t},"carrier":{c},"error_code":{code},"error_message":{text}}}'
            )
            for t, st, f, c, code, text in zip(
                c_final, final_status, flags, carriers, err_codes, err_msgs, strict=True
            )
        ]
        extra = s["extra"][rows].astype(np.int64)
        extra_index = np.where(extra == 2, 2 + sup % 5, extra)
        columns = zip(
            ids,
            c_created,
            c_updated,
            c_timestamp,
            c_send_time,
            tables["camp"][camp + 1].tolist(),
            c_camp_time,
            self._sup_json[sup].tolist(),
            _NUMBERS[s["num"][rows]].tolist(),
            tables["msg"][msg].tolist(),
            hexes,
            np.where(inbound, INBOUND_DIRECTION, OUTBOUND_DIRECTION).tolist(),
            d.status[rows].tolist(),
            queued,
            sent,
            final,
            final_status,
            segs,
            d.opens[rows].tolist(),
            _BOOLS[d.converted[rows].astype(np.int64)].tolist(),
            _BOOLS[d.archived[rows].astype(np.int64)].tolist(),
            self._rcpt_json[s["rcpt"][rows].astype(np.int64) * cat.n_supporters + sup].tolist(),
            _EXTRAS[extra_index].tolist(),
            strict=True,
        )
        return [
            f'{{"id":{rid},"resource_uri":"/api/sendsms/{rid}/","created":{cr},'
            f'"updated":{up},"timestamp":{ts},"send_time":{st},{bu},'
            f'"bulk_sms_send_time":{bt},{su},"associated_number":"{nu}",'
            f'"message_content":{mc},'
            f'"message_uuid":"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}",'
            f'"message_direction":{di},"current_status":{cs},"queued_event":{qe},'
            f'"sent_event":{se},"delivered_event":{fe if f == DELIVERED else "{}"},'
            f'"failed_event":{fe if f == FAILED else "{}"},'
            f'"undelivered_event":{fe if f == UNDELIVERED else "{}"},'
            f'"rejected_event":{fe if f == REJECTED else "{}"},'
            f'"effective_message_count":{sg},"opens":{op},"converted":{cv},'
            f'"archived":{ar},"rcpt_dict":{rc},"_extra":{ex}}}'
            for (rid, cr, up, ts, st, bu, bt, su, nu, mc, h, di, cs, qe, se, fe, f, sg, op, cv,
                 ar, rc, ex) in columns
        ]
