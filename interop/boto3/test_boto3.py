"""The emulator as botocore sees it: every operation's response parsed against
botocore's own copy of the service model, and every error code surfaced as a
ClientError with the right Error.Code."""
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import make_client

RESPONSE_META = "ResponseMetadata"
TYPES = {
    "string": str,
    "integer": int,
    "long": int,
    "boolean": bool,
    "list": list,
    "structure": dict,
    "map": dict,
}


def check_shape(value, shape, path):
    """Every field of `value` is a member of `shape`, with the model's type."""
    expected = TYPES[shape.type_name]
    assert isinstance(value, expected), f"{path}: {type(value).__name__} is not {shape.type_name}"
    if shape.type_name == "structure":
        for key, member in value.items():
            assert key in shape.members, f"{path}.{key} is not in the model's {shape.name}"
            check_shape(member, shape.members[key], f"{path}.{key}")
        for required in shape.required_members:
            assert required in value, f"{path}: required {required} missing"
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            check_shape(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map":
        for k, v in value.items():
            check_shape(v, shape.value, f"{path}[{k}]")
    elif shape.type_name == "string" and shape.enum:
        assert value in shape.enum, f"{path}: {value!r} is not one of {shape.enum}"


def parsed(client, operation, response):
    body = {k: v for k, v in response.items() if k != RESPONSE_META}
    shape = client.meta.service_model.operation_model(operation).output_shape
    if shape is not None:
        check_shape(body, shape, operation)
    assert response[RESPONSE_META]["HTTPStatusCode"] == 200
    return body


def connect(client, chat, types=("WEBSOCKET", "CONNECTION_CREDENTIALS")):
    resp = client.create_participant_connection(
        Type=list(types), ParticipantToken=chat["ParticipantToken"], ConnectParticipant=True
    )
    return parsed(client, "CreateParticipantConnection", resp)


def test_create_participant_connection_all_three_types(client, emulator):
    chat = emulator.new_chat()
    body = connect(client, chat, ("WEBSOCKET", "CONNECTION_CREDENTIALS", "WEBRTC_CONNECTION"))
    assert body["Websocket"]["Url"].startswith("ws://127.0.0.1:")
    assert body["Websocket"]["ConnectionExpiry"].endswith("Z")
    assert body["ConnectionCredentials"]["ConnectionToken"]
    meeting = body["WebRTCConnection"]["Meeting"]
    assert meeting["MeetingId"] and meeting["MediaPlacement"]["SignalingUrl"]
    assert body["WebRTCConnection"]["Attendee"]["JoinToken"]
    only_ws = connect(client, chat, ("WEBSOCKET",))
    assert set(only_ws) == {"Websocket"}


def test_every_other_operation(client, emulator):
    chat = emulator.new_chat()
    token = connect(client, chat)["ConnectionCredentials"]["ConnectionToken"]
    sent = parsed(client, "SendMessage", client.send_message(
        ContentType="text/plain", Content="hello from boto3", ConnectionToken=token))
    assert sent["Id"] and sent["AbsoluteTime"]
    parsed(client, "SendEvent", client.send_event(
        ContentType="application/vnd.amazonaws.connect.event.typing", ConnectionToken=token))
    parsed(client, "SendEvent", client.send_event(
        ContentType="application/vnd.amazonaws.connect.event.message.read",
        Content='{"messageId":"%s"}' % sent["Id"], ConnectionToken=token))

    started = parsed(client, "StartAttachmentUpload", client.start_attachment_upload(
        ContentType="text/plain", AttachmentSizeInBytes=5, AttachmentName="note.txt",
        ClientToken=str(uuid.uuid4()), ConnectionToken=token))
    upload = started["UploadMetadata"]
    req = urllib.request.Request(upload["Url"], data=b"hello", method="PUT", headers=upload["HeadersToInclude"])
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    parsed(client, "CompleteAttachmentUpload", client.complete_attachment_upload(
        AttachmentIds=[started["AttachmentId"]], ClientToken=str(uuid.uuid4()), ConnectionToken=token))
    got = parsed(client, "GetAttachment", client.get_attachment(
        AttachmentId=started["AttachmentId"], ConnectionToken=token, UrlExpiryInSeconds=30))
    assert got["AttachmentSizeInBytes"] == 5
    with urllib.request.urlopen(got["Url"], timeout=10) as r:
        assert len(r.read()) == 5

    session = str(uuid.uuid4())
    url = parsed(client, "GetAuthenticationUrl", client.get_authentication_url(
        SessionId=session, RedirectUri="https://example.com/done", ConnectionToken=token))
    assert session in url["AuthenticationUrl"]
    parsed(client, "CancelParticipantAuthentication", client.cancel_participant_authentication(
        SessionId=session, ConnectionToken=token))

    view = parsed(client, "DescribeView", client.describe_view(ViewToken="interactive-list", ConnectionToken=token))
    assert view["View"]["Content"]["Actions"]

    transcript = parsed(client, "GetTranscript", client.get_transcript(
        ConnectionToken=token, ScanDirection="FORWARD", SortOrder="ASCENDING", MaxResults=100))
    types = [i["Type"] for i in transcript["Transcript"]]
    assert types == ["EVENT", "MESSAGE", "ATTACHMENT"], types
    assert transcript["Transcript"][2]["Attachments"][0]["AttachmentName"] == "note.txt"

    parsed(client, "DisconnectParticipant", client.disconnect_participant(ConnectionToken=token))
    # The customer left: the chat ended, and the token no longer works.
    last = emulator.admin("GET", f"/admin/chats/{chat['ContactId']}/transcript")["Transcript"][-1]
    assert last["ContentType"] == "application/vnd.amazonaws.connect.event.chat.ended"
    with pytest.raises(ClientError) as err:
        client.get_transcript(ConnectionToken=token)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"


def test_transcript_paging_with_next_token(client, emulator):
    chat = emulator.new_chat()
    for n in range(23):
        emulator.admin("POST", f"/admin/chats/{chat['ContactId']}/messages", {"Content": f"m{n}"})
    token = connect(client, chat)["ConnectionCredentials"]["ConnectionToken"]
    seen, kwargs = [], {}
    while True:
        page = parsed(client, "GetTranscript", client.get_transcript(
            ConnectionToken=token, ScanDirection="FORWARD", MaxResults=10, **kwargs))
        seen += [i["Id"] for i in page["Transcript"]]
        if not page.get("NextToken"):
            break
        kwargs = {"NextToken": page["NextToken"]}
    # Customer joined, agent joined, 23 messages: three pages.
    assert len(seen) == 25 and len(set(seen)) == 25
    paginator = client.get_paginator("get_transcript") if client.can_paginate("get_transcript") else None
    if paginator is not None:
        ids = [i["Id"] for p in paginator.paginate(ConnectionToken=token, ScanDirection="FORWARD",
                                                    PaginationConfig={"PageSize": 7}) for i in p["Transcript"]]
        assert ids == seen


@pytest.mark.parametrize(
    "status,code",
    [
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (409, "ConflictException"),
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
    ],
)
def test_injected_errors_surface_with_their_codes(client, emulator, status, code):
    chat = emulator.new_chat()
    token = connect(client, chat)["ConnectionCredentials"]["ConnectionToken"]
    emulator.fault("SendMessage", status)
    with pytest.raises(ClientError) as err:
        client.send_message(ContentType="text/plain", Content="x", ConnectionToken=token)
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_natural_errors(client, emulator):
    chat = emulator.new_chat()
    with pytest.raises(ClientError) as err:
        client.create_participant_connection(Type=["WEBSOCKET"], ParticipantToken="wrong")
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    token = connect(client, chat)["ConnectionCredentials"]["ConnectionToken"]
    with pytest.raises(ClientError) as err:
        client.get_transcript(ConnectionToken=token, NextToken="not-a-token")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        client.send_event(ContentType="application/vnd.amazonaws.connect.event.message.read",
                          Content='{"messageId":"nope"}', ConnectionToken=token)
    assert err.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as err:
        client.describe_view(ViewToken="no-such-view", ConnectionToken=token)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        client.start_attachment_upload(ContentType="image/png", AttachmentSizeInBytes=30_000_000,
                                       AttachmentName="big.png", ClientToken="t", ConnectionToken=token)
    assert err.value.response["Error"]["Code"] == "ServiceQuotaExceededException"


def test_botocore_retries_throttling_then_succeeds(emulator):
    chat = emulator.new_chat()
    client = make_client(emulator, retries=3)
    token = connect(client, chat)["ConnectionCredentials"]["ConnectionToken"]
    emulator.fault("SendMessage", 429, count=2)
    resp = client.send_message(ContentType="text/plain", Content="eventually", ConnectionToken=token)
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
