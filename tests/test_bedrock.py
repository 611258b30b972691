"""Bedrock's runtime through the gateway, with boto3 as the client: Converse, ConverseStream,
InvokeModel and InvokeModelWithResponseStream, the streams as AWS event-stream frames
(their CRCs checked by botocore), and the gateway signing with its own credentials.
Fees are worked out here by hand from AWS's list prices (per million tokens):
Claude Haiku 4.5 through a regional (us.) profile $1.10 input, $0.11 cache read, $5.50
output; Claude Sonnet 4.5 through the global profile $3, $0.30, $15; Nova Lite $0.06 and
$0.24; Llama 3.1 70B $0.72 both ways."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from decimal import Decimal as D

import boto3
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from upstream import events

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
SONNET = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
M = D(1_000_000)
ASK = [{"role": "user", "content": [{"text": "What do tokens cost?"}]}]


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream frame: prelude, its CRC, string headers, payload, CRC."""
    head = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v))
                    + v.encode() for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(kind: str, payload: dict) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json",
                  ":message-type": "event"}, json.dumps(payload).encode())


def chunk(inner: dict) -> bytes:
    return event("chunk", {"bytes": base64.b64encode(json.dumps(inner).encode()).decode()})


def streamed(frames: list[bytes]):
    async def route(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        for f in frames:
            await resp.write(f)
        await resp.write_eof()
        return resp
    return route


def answered(payload: dict, **headers: str):
    async def route(request, body):
        return web.json_response(payload, headers=headers)
    return route


def client(gw, key: str = "AKIDCLIENT"):
    return boto3.client("bedrock-runtime", region_name="us-east-1",
                        endpoint_url=gw.url + "/bedrock", aws_access_key_id=key,
                        aws_secret_access_key="client-secret",
                        config=Config(retries={"max_attempts": 1}))


async def bedrock(gateway, **service):
    return await gateway(services=[{"name": "bedrock", "base_url": gateway.upstream_url,
                                    "provider": "bedrock", **service}])


CONVERSE = {"output": {"message": {"role": "assistant", "content": [{"text": "Per million."}]}},
            "stopReason": "end_turn", "metrics": {"latencyMs": 321},
            "usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 1320,
                      "cacheReadInputTokens": 1200, "cacheWriteInputTokens": 0}}


async def test_converse_is_billed_at_the_profiles_price_with_its_cache(gateway, replay):
    replay.routes[f"/model/{HAIKU}/converse"] = answered(CONVERSE)
    gw = await bedrock(gateway)
    answer = await asyncio.to_thread(client(gw).converse, modelId=HAIKU, messages=ASK)
    assert answer["output"]["message"]["content"][0]["text"] == "Per million."
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.model, rec.stream) == ("converse", HAIKU, False)
    assert rec.api_key.startswith("key-")  # the access key id it signed with, hashed
    # inputTokens exclude the 1,200 read from the cache.
    assert (rec.usage.input_text, rec.usage.input_cache_read, rec.usage.output_text) == (
        100, 1200, 20)
    assert rec.fee == (100 * D("1.10") + 1200 * D("0.11") + 20 * D("5.50")) / M \
        == D("0.000352")


async def test_converses_request_metadata_names_the_end_user(gateway, replay):
    replay.routes[f"/model/{HAIKU}/converse"] = answered(CONVERSE)
    gw = await bedrock(gateway)
    await asyncio.to_thread(client(gw).converse, modelId=HAIKU, messages=ASK,
                            requestMetadata={"user_id": "user-42", "team": "search"})
    assert (await gw.records.wait(1)).end_user == "user-42"


async def test_converse_stream_frames_pass_untouched_and_bill_from_metadata(gateway, replay):
    frames = [event("messageStart", {"role": "assistant"}),
              event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
              event("contentBlockStop", {"contentBlockIndex": 0}),
              event("messageStop", {"stopReason": "end_turn"}),
              event("metadata", {"usage": {"inputTokens": 25, "outputTokens": 7,
                                           "totalTokens": 32}, "metrics": {"latencyMs": 100}})]
    replay.routes[f"/model/{NOVA}/converse-stream"] = streamed(frames)
    gw = await bedrock(gateway)

    def ask():
        answer = client(gw).converse_stream(modelId=NOVA, messages=ASK)
        return list(answer["stream"])

    got = await asyncio.to_thread(ask)
    assert got[1]["contentBlockDelta"]["delta"]["text"] == "Hello"
    assert got[-1]["metadata"]["usage"]["outputTokens"] == 7
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.stream, rec.ttft is not None) == ("converse", True, True)
    assert (rec.usage.input_text, rec.usage.output_text) == (25, 7)
    assert rec.fee == (25 * D("0.06") + 7 * D("0.24")) / M == D("0.00000318")


async def test_invoke_model_reads_claudes_body_and_other_makers_headers(gateway, replay):
    claude = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
              "content": [{"type": "text", "text": "Per million."}],
              "usage": {"input_tokens": 472, "cache_read_input_tokens": 1200,
                        "cache_creation_input_tokens": 0, "output_tokens": 89}}
    replay.routes[f"/model/{SONNET}/invoke"] = answered(
        claude, **{"X-Amzn-Bedrock-Input-Token-Count": "472",
                   "X-Amzn-Bedrock-Output-Token-Count": "89"})
    replay.routes[f"/model/{LLAMA}/invoke"] = answered(
        {"generation": "Per million.", "stop_reason": "stop"},
        **{"X-Amzn-Bedrock-Input-Token-Count": "10",
           "X-Amzn-Bedrock-Output-Token-Count": "5"})
    gw = await bedrock(gateway)
    c = client(gw)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                       "messages": [{"role": "user", "content": "Hi"}]})
    out = await asyncio.to_thread(c.invoke_model, modelId=SONNET, body=body)
    assert json.loads(out["body"].read()) == claude
    rec = await gw.records.wait(1)
    # Bedrock's model id prices it (the global profile), not the body's "claude-x".
    assert (rec.operation, rec.model) == ("invoke", SONNET)
    assert rec.fee == (472 * 3 + 1200 * D("0.30") + 89 * 15) / M == D("0.003111")
    await asyncio.to_thread(c.invoke_model, modelId=LLAMA, body='{"prompt": "Hi"}')
    rec = await gw.records.wait(2)
    assert (rec.usage.input_text, rec.usage.output_text, rec.usage.estimated_input) == (
        10, 5, 0)
    assert rec.fee == 15 * D("0.72") / M


async def test_invoke_stream_of_claude_events_in_base64_chunks(gateway, replay):
    inner = [json.loads(e.split(b"data: ", 1)[1]) for e in events("anthropic_stream.sse")]
    inner[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": 472, "outputTokenCount": 89, "invocationLatency": 900,
        "firstByteLatency": 300}
    replay.routes[f"/model/{HAIKU}/invoke-with-response-stream"] = streamed(
        [chunk(e) for e in inner])
    gw = await bedrock(gateway)

    def ask():
        answer = client(gw).invoke_model_with_response_stream(
            modelId=HAIKU, body=json.dumps({"anthropic_version": "bedrock-2023-05-31",
                                            "max_tokens": 100, "messages": []}))
        return [json.loads(e["chunk"]["bytes"]) for e in answer["body"]]

    assert await asyncio.to_thread(ask) == inner
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.stream, rec.model) == ("invoke", True, HAIKU)
    # Claude's own usage (with its cache read), not only the invocation metrics.
    assert (rec.usage.input_text, rec.usage.input_cache_read, rec.usage.output_text) == (
        472, 1200, 89)
    assert rec.fee == (472 * D("1.10") + 1200 * D("0.11") + 89 * D("5.50")) / M


async def test_the_gateway_signs_with_its_own_credentials(gateway, replay, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDGATEWAY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "gateway-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    verdicts = []

    async def verify(request, body):
        """AWS's check, with the secret it was given: botocore computes the signature."""
        sent = request.headers["Authorization"]
        check = AWSRequest(method=request.method, url=str(request.url), data=body,
                           headers={"Content-Type": request.headers["Content-Type"],
                                    "X-Amz-Date": request.headers["X-Amz-Date"]})
        check.context["timestamp"] = request.headers["X-Amz-Date"]
        auth = SigV4Auth(Credentials("AKIDGATEWAY", "gateway-secret"), "bedrock", "us-east-1")
        expected = auth.signature(auth.string_to_sign(check, auth.canonical_request(check)),
                                  check)
        verdicts.append((sent.split("Credential=")[1][:11], sent.endswith(expected)))
        if not sent.endswith(expected):
            return web.json_response({"message": "signature mismatch"}, status=403)
        return web.json_response(CONVERSE)

    replay.routes[f"/model/{HAIKU}/converse"] = verify
    gw = await bedrock(gateway, aws_credentials="gateway", aws_region="us-east-1")
    answer = await asyncio.to_thread(client(gw).converse, modelId=HAIKU, messages=ASK)
    assert answer["usage"]["outputTokens"] == 20
    assert verdicts == [("AKIDGATEWAY", True)]  # signed again, not the client's signature
    rec = await gw.records.wait(1)
    assert rec.fee == D("0.000352")
    # A signature made with another secret is refused by the same check.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-secret")
    other = await bedrock(gateway, aws_credentials="gateway", aws_region="us-east-1")
    with pytest.raises(Exception, match="signature mismatch"):
        await asyncio.to_thread(client(other).converse, modelId=HAIKU, messages=ASK)
    assert verdicts[-1] == ("AKIDGATEWAY", False)


@pytest.mark.parametrize("damage", ["prelude", "message", "truncated"])
async def test_damaged_frames_end_in_one_record_without_a_crash(gateway, replay, damage):
    good = [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi there"}}),
            event("metadata", {"usage": {"inputTokens": 25, "outputTokens": 7}})]
    bad = bytearray(good[1])
    if damage == "prelude":
        bad[9] ^= 0xFF  # the prelude's CRC: framing lost, the rest unread
    elif damage == "message":
        bad[-1] ^= 0xFF  # the frame's CRC: that frame unread
    else:
        bad = bad[:-10]  # cut short
    replay.routes[f"/model/{NOVA}/converse-stream"] = streamed([good[0], bytes(bad)])
    gw = await bedrock(gateway)
    async with __import__("aiohttp").ClientSession() as s:
        async with s.post(gw.url + f"/bedrock/model/{NOVA}/converse-stream",
                          json={"messages": ASK},
                          headers={"Authorization": "Bearer bedrock-api-key-1"}) as r:
            assert await r.read() == good[0] + bytes(bad)  # passed on as it came
    rec = await gw.records.wait(1)
    assert len(gw.records) == 1
    # No usage read: estimated from the text (8 characters out, 20 in), marked so.
    assert (rec.usage.estimated_output, rec.usage.estimated_input) == (2, 5)


async def test_gemini_and_bedrock_in_the_history_the_usage_api_and_metrics(
        gateway, replay, admin, tmp_path):
    """No query changes for the new providers: their requests group like any other."""
    from prometheus_client import CollectorRegistry
    from upstream import json_file

    from exporter.store.database import Database
    from exporter.store.writer import History
    from exporter.telemetry.background import HistoryMetrics
    replay.routes[f"/model/{HAIKU}/converse"] = answered(CONVERSE)
    replay.routes["/v1beta/models/gemini-2.5-flash:generateContent"] = json_file(
        "gemini_generate.json")
    db = Database(str(tmp_path / "h.db"))
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    gw = await gateway(history=history, services=[
        {"name": "bedrock", "base_url": gateway.upstream_url, "provider": "bedrock"},
        {"name": "gemini", "base_url": gateway.upstream_url, "provider": "gemini"}])
    await asyncio.to_thread(client(gw).converse, modelId=HAIKU, messages=ASK)
    async with __import__("aiohttp").ClientSession() as s:
        async with s.post(gw.url + "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
                          json={"contents": [{"parts": [{"text": "Hi"}]}]},
                          headers={"x-goog-api-key": "AIza-test"}) as r:
            assert r.status == 200
    await gw.records.wait(2)
    await gw.listener.cleanup()  # every row written
    api = await admin(CollectorRegistry(), db=db)
    r = await api.get("/api/usage", params={"group_by": "provider,model",
                                             "from": "2026-01-01", "to": "2027-01-01"})
    body = await r.json()
    assert r.status == 200, body
    found = {(row["provider"], row["model"]): (row["requests"], row["fee_usd"])
             for row in body["data"]}
    # The fees of the Converse and generateContent tests above.
    assert found == {("bedrock", HAIKU): (1, 0.000352),
                     ("gemini", "gemini-2.5-flash"): (1, 0.000971)}
    assert gw.total("llm_cost_usd_total", provider="bedrock") == pytest.approx(0.000352)
    assert gw.total("llm_requests_total", operation="generate_content", code="200") == 1


async def test_credentials_due_for_refresh_are_refreshed_off_the_event_loop():
    import threading

    from exporter.gateway.aws import Signer

    class Expiring:  # botocore's RefreshableCredentials, near the end of their hour
        threads: list = []

        def refresh_needed(self):
            return True

        def get_frozen_credentials(self):
            self.threads.append(threading.current_thread())
            return Credentials("AKIDFRESH", "fresh-secret", "token-1").get_frozen_credentials()

    signer = Signer("us-east-1", Expiring())
    lines = await signer.headers("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/x",
                                 b"{}", "application/json")
    assert b"Credential=AKIDFRESH/" in lines and b"x-amz-security-token: token-1\r\n" in lines
    assert Expiring.threads and Expiring.threads[0] is not threading.main_thread()
