"""The lookup tables records point into: supporters, message texts and campaigns."""

from __future__ import annotations

import unicodedata

import numpy as np

from pipelines.simulator import pools
from pipelines.simulator.gsm import segment_count
from pipelines.simulator.timefmt import from_us

_CODE_ALPHABET = list("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


class Catalog:
    """Supporters (personal data), distinct message texts and bulk campaigns of the world.

    Records hold indexes into these lists; rendering turns the indexes into JSON.
    """

    def __init__(self) -> None:
        """An empty catalog (supporters come from `build_supporters`)."""
        # messages: text, segments, has a tracked link
        self.messages: list[str] = []
        self.msg_segments: list[int] = []
        self.msg_has_link: list[bool] = []
        self._msg_index: dict[str, int] = {}
        # campaigns
        self.camp_desc: list[str] = []
        self.camp_msg: list[int] = []
        self.camp_num: list[int] = []
        self.camp_time = np.empty(0, dtype=np.int64)
        # supporters
        self.n_supporters = 0
        self.sup_carrier = np.empty(0, dtype=np.int64)
        self.sup_first: list[str] = []
        self.sup_last: list[str] = []
        self.sup_name: list[str | None] = []
        self.sup_email: list[str | None] = []
        self.sup_title: list[str | None] = []
        self.sup_org: list[str | None] = []
        self.sup_phone: list[str] = []
        self.sup_zip: list[str] = []

    def add_message(self, text: str) -> int:
        """The index of `text` among the messages (added on first use)."""
        index = self._msg_index.get(text)
        if index is None:
            index = len(self.messages)
            self.messages.append(text)
            self.msg_segments.append(segment_count(text))
            self.msg_has_link.append("https://" in text)
            self._msg_index[text] = index
        return index

    def build_supporters(self, rng: np.random.Generator, n_sup: int) -> None:
        """Generate `n_sup` supporters with realistic personal data."""
        first_i = rng.integers(0, len(pools.FIRST_NAMES), n_sup).tolist()
        last_i = rng.integers(0, len(pools.LAST_NAMES), n_sup).tolist()
        dom_i = rng.integers(0, len(pools.EMAIL_DOMAINS), n_sup).tolist()
        title_i = rng.integers(0, len(pools.TITLES), n_sup).tolist()
        org_i = rng.integers(0, len(pools.ORGANIZATIONS), n_sup).tolist()
        zip_i = rng.integers(0, len(pools.ZIP_CODES), n_sup).tolist()
        area_i = rng.integers(0, len(pools.AREA_CODES), n_sup).tolist()
        exchange = rng.integers(201, 999, n_sup).tolist()
        line = rng.integers(0, 10_000, n_sup).tolist()
        email_num = rng.integers(1, 999, n_sup).tolist()
        shape = rng.random((n_sup, 3)).tolist()
        self.sup_carrier = rng.integers(0, len(pools.CARRIERS), n_sup)
        for i in range(n_sup):
            first = pools.FIRST_NAMES[first_i[i]]
            last = pools.LAST_NAMES[last_i[i]]
            name_roll, email_roll, _ = shape[i]
            self.sup_first.append(first)
            self.sup_last.append(last)
            self.sup_name.append(
                None if name_roll < 0.02 else "" if name_roll < 0.04 else f"{first} {last}"
            )
            if email_roll < 0.05:
                email: str | None = None
            elif email_roll < 0.08:
                email = ""
            elif email_roll < 0.5:
                email = f"{_ascii(first)}.{_ascii(last)}@{pools.EMAIL_DOMAINS[dom_i[i]]}"
            else:
                email = (
                    f"{_ascii(first)[:1]}{_ascii(last)}{email_num[i]}"
                    f"@{pools.EMAIL_DOMAINS[dom_i[i]]}"
                )
            self.sup_email.append(email)
            self.sup_title.append(pools.TITLES[title_i[i]])
            self.sup_org.append(pools.ORGANIZATIONS[org_i[i]])
            exch = exchange[i] if exchange[i] != 555 else 556
            self.sup_phone.append(f"+1{pools.AREA_CODES[area_i[i]]}{exch:03d}{line[i]:04d}")
            self.sup_zip.append(pools.ZIP_CODES[zip_i[i]])
        self.n_supporters = n_sup

    def new_campaign(self, rng: np.random.Generator, when: int) -> int:
        """Create a campaign scheduled at `when` (µs); returns its index."""
        template = int(rng.integers(0, len(pools.CAMPAIGNS)))
        desc, text = pools.CAMPAIGNS[template]
        index = len(self.camp_desc)
        code = "".join(rng.choice(_CODE_ALPHABET, 5))
        message = text.format(link=f"https://qrm.us/{code}")
        stamp = from_us(when)
        self.camp_desc.append(f"{desc} \u2013 {stamp:%b} {stamp.day}")
        self.camp_msg.append(self.add_message(message))
        self.camp_num.append(int(rng.integers(0, len(pools.ORG_NUMBERS))))
        self.camp_time = np.append(self.camp_time, np.int64(when))
        return index

    def campaign_size(self, rng: np.random.Generator) -> int:
        """A campaign's audience: 30 to 90 % of the supporters."""
        low = max(1, int(self.n_supporters * 0.3))
        high = max(low + 1, int(self.n_supporters * 0.9))
        return int(rng.integers(low, high))
