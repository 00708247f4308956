"""A sample order for site tests (``ris hl7 send --sample``): a new CT order, one hour from now."""

from __future__ import annotations

import datetime as dt

from ris.domain.ids import new_short_id


def sample_order(now: dt.datetime) -> str:
    """An ORM^O01 v2.5.1 (UTF-8) with fresh identifiers, scheduled an hour after ``now`` (aware)."""
    run = new_short_id("")[:10]
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    start = (now + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0).strftime("%Y%m%d%H%M%S%z")
    segments = [
        f"MSH|^~\\&|RISTEST|SITE|RIS|RADIOLOGIE|{stamp}||ORM^O01^ORM_O01|T{run}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||T{run}^^^SITE^PI||TESTPATIENT^JÜRGEN^^^^^L||19700101|M",
        "PV1|1|O|RAD^^^SITE|||||1^WEBER^KLAUS^^^DR.",
        f"ORC|NW|P{run}^RISTEST|||SC||^^^{start}^^R",
        f"OBR|1|P{run}^RISTEST||CTTHX^CT Thorax^99TEST||||||||||||1^WEBER^KLAUS^^^DR.||A{run}|RP{run}|SPS{run}|"
        f"CT_TEST_01|||CT|||^^^{start}^^R",
        "NTE|1||Test order sent with ris hl7 send --sample",
    ]
    return "\r".join(segments) + "\r"
