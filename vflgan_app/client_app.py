"""ClientApp: one party; restore it, run the message's calls, store it, reply.

Each handler is the same three lines: the party from :mod:`vflgan_app.flower.node`
(live in this process, or restored from ``context.state``: a deployment SuperNode
starts a fresh process per message), its calls decoded and run in order, its state
stored and the replies encoded. Node facts (``partition-id``, ``data-path``, ...) are
documented in :mod:`vflgan_app.flower.node`.
"""

from __future__ import annotations

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from vflgan_app.flower import codec, node

app = ClientApp()


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    """Handshake: party id, schema, id-list hash."""
    return _reply(msg, context)


@app.train("step")
def step(msg: Message, context: Context) -> Message:
    """Fused training calls: gradients of step t, then the forward of step t+1."""
    return _reply(msg, context)


@app.train("checkpoint")
def checkpoint(msg: Message, context: Context) -> Message:
    """Save or load this party's own resumable checkpoint."""
    return _reply(msg, context)


@app.query("generate")
def generate(msg: Message, context: Context) -> Message:
    """Publication: sample this party's columns from the shared seed."""
    return _reply(msg, context)


@app.query("deliver")
def deliver(msg: Message, context: Context) -> Message:
    """After publication: store the synthetic data in this party's delivery folder."""
    return _reply(msg, context)


def _reply(msg: Message, context: Context) -> Message:
    return Message(serve(msg.content, context, msg.metadata.message_type), reply_to=msg)


def serve(content: RecordDict, context: Context, message_type: str) -> RecordDict:
    """Restore the party, run the message's calls in order, store the state, encode.

    Raises:
        ValueError: a call that ``message_type`` may not carry.
    """
    calls = codec.decode_calls(content, message_type)
    if message_type == codec.QUERY_DELIVER:  # files for the party's owner, not the Party
        return codec.encode_replies([node.receive_delivery(context, **c.args) for c in calls])
    party = node.live_party(context)
    replies = [getattr(party, c.method)(**c.args) for c in calls]
    node.keep_party(context, party, changed=message_type.startswith("train."))
    return codec.encode_replies(replies)
