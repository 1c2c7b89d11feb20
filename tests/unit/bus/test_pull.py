"""kanade.bus.pull.published_at: the stream's publish time read straight from the reply
subject is nats-py's ``msg.metadata.timestamp``, to the microsecond (a replay must write the
same ``recorded_at``), for both reply forms; anything else fails as nats-py does."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from kanade.bus.pull import published_at

V1 = "$JS.ACK.KANADE_RESULTS.projector-results.1.{seq}.{seq}.{ts}.0"
V2 = "$JS.ACK.dom.ACCHASH.KANADE_RESULTS.projector-results.2.{seq}.{seq}.{ts}.7.tok"


def _msg(reply: str) -> Msg:
    return Msg(_client=None, subject="kanade.result.pc", reply=reply, data=b"{}")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", [V1, V2, V2.removesuffix(".tok")])
@pytest.mark.parametrize("ts", [1733350000123456789, 1733350000999999999, 1, 4102444799000000001])
def test_the_publish_time_is_nats_pys_metadata_timestamp(form: str, ts: int) -> None:
    reply = form.format(seq=5, ts=ts)
    assert published_at(_msg(reply)) == _msg(reply).metadata.timestamp


@pytest.mark.parametrize(
    "reply", ["", "kanade.inbox.x", "$JS.ACK.a.b.1.2.3.4", "$JS.ACK.a.b.c.d.1.2.3.4"]
)
def test_a_reply_that_is_not_a_jetstream_ack_fails_as_in_nats_py(reply: str) -> None:
    with pytest.raises(NotJSMessageError):
        published_at(_msg(reply))
