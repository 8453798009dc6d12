"""Constants of the Quorum SendSMS API and of the source's defaults.

Field names follow `../shared/quorum-api.md`, the contract the client and the simulator share.
"""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://www.quorum.us"
LIST_PATH: Final = "/api/sendsms/"
SEND_PATH: Final = "/api/sendsms/send_individual_sms/"

#: The API caps `limit` at 1000; asking for the cap costs the fewest round trips.
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 1000

#: Where a first sync starts when neither `--since` nor the config says otherwise.
DEFAULT_INITIAL_VALUE: Final = "2010-01-01T00:00:00+00:00"
#: How far behind the saved cursor the next run starts, so changes committed late are seen.
DEFAULT_LAG_SECONDS: Final = 3600.0

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
DEFAULT_MAX_ATTEMPTS: Final = 8
DEFAULT_MAX_TOTAL_WAIT_SECONDS: Final = 600.0
DEFAULT_BACKOFF_INITIAL_SECONDS: Final = 0.5
DEFAULT_BACKOFF_MAX_SECONDS: Final = 60.0

CURSOR_FIELD: Final = "updated"
TIMESTAMP_FIELDS: Final = ("created", "updated", "timestamp", "send_time", "bulk_sms_send_time")
EVENT_FIELDS: Final = (
    "queued_event",
    "sent_event",
    "delivered_event",
    "failed_event",
    "undelivered_event",
    "rejected_event",
)
#: Fields kept whole as JSON text; their keys are arbitrary (and may be personal data).
JSON_FIELDS: Final = ("rcpt_dict", "_extra")

RAW_DATASET: Final = "quorum_raw"
SENDSMS_TABLE: Final = "sendsms"
EVENTS_TABLE: Final = "sendsms_events"
PIPELINE_NAME: Final = "quorum_sms"
