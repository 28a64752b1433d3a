"""The JSON documents of ``fednode status``/``peers``/``privacy --format json``.

``MessageToDict`` renders 64-bit integers as strings (proto3's JSON mapping), so
``jq '.round > 5'`` compared strings; here every integer field is a JSON number. The
status document also tells only what is true of the node: no epsilon budget and no
``releasing`` claim when no differential privacy is on, and ``last_accuracy`` is null
before the first evaluation. The schema is documented in docs/operations.md ("JSON
schema of fednode status") and a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from fednode_proto.v1 import admin_pb2

__all__ = ["message_to_json", "status_cell", "status_document"]

_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
# Only meaningful when some differential privacy is on.
_PRIVACY_ONLY = ("epsilon_spent", "epsilon_budget", "releasing")


def message_to_json(msg: Message) -> dict[str, Any]:
    """``msg`` as a JSON-ready dict: proto field names, every field, integers as numbers.

    Parameters
    ----------
    msg : Message
        Any protobuf message.

    Returns
    -------
    dict
        What ``MessageToDict`` gives, with 64-bit integers turned back into ints.
    """
    out: dict[str, Any] = MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _fix(msg, out)
    return out


def _fix(msg: Message, data: dict[str, Any]) -> None:
    for field in msg.DESCRIPTOR.fields:
        if field.name not in data:
            continue
        value = getattr(msg, field.name)
        repeated = field.is_repeated
        if field.type in _INTEGERS:
            data[field.name] = [int(v) for v in value] if repeated else int(value)
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        ):
            if field.message_type.fields_by_name["value"].type in _INTEGERS:
                data[field.name] = {k: int(v) for k, v in data[field.name].items()}
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                for sub, d in zip(value, data[field.name], strict=True):
                    _fix(sub, d)
            else:
                _fix(value, data[field.name])


def status_document(reply: admin_pb2.StatusReply) -> dict[str, Any]:
    """The ``fednode status --format json`` document of a ``StatusReply``.

    Parameters
    ----------
    reply : admin_pb2.StatusReply
        The daemon's answer.

    Returns
    -------
    dict
        :func:`message_to_json` of ``reply``, without ``epsilon_spent``, ``epsilon_budget``
        and ``releasing`` when neither privacy level is enabled, and with ``last_accuracy``
        None (JSON null) before the first evaluation.
    """
    data = message_to_json(reply)
    for key in ("node_privacy", "record_privacy"):
        # An unset sub-message is left out by MessageToDict; the schema always has both.
        data.setdefault(key, message_to_json(getattr(reply, key)))
    private = reply.node_privacy.enabled or reply.record_privacy.enabled
    if not private:
        for key in _PRIVACY_ONLY:
            data.pop(key, None)
    if not reply.history:
        data["last_accuracy"] = None
    return data


# What an empty model hash or SPSA digest means while the learner loads (a restarted SPSA
# node replays its whole scalar log before it knows its model, which can take a while).
_LOADING = {
    "spsa": "- (not yet: replaying the SPSA scalar log from the store)",
    "": "-",
}


def status_cell(key: str, value: Any, data: dict[str, Any]) -> str:
    """The text-table cell of one key of a status document.

    Parameters
    ----------
    key : str
        A key of :func:`status_document`'s result.
    value : Any
        Its value.
    data : dict
        The whole document (the learner decides what an empty hash means).

    Returns
    -------
    str
        ``"-"`` for None; for an empty ``model_hash`` (and an SPSA node's empty
        ``spsa_digest``) what the node is doing instead of an empty cell; else ``str(value)``.
    """
    if value is None:
        return "-"
    learner = str(data.get("learner", ""))
    if value == "" and (key == "model_hash" or (key == "spsa_digest" and learner == "spsa")):
        return _LOADING.get(learner, "- (not yet: the learner is loading its data and model)")
    return str(value)
