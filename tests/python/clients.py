"""Drives the Assegai proxy with the official `openai` and `anthropic` client libraries.

Run by tests/tests/ai_clients.rs. Settings come from the environment:
  ASSEGAI_OPENAI_BASE_URL     e.g. http://127.0.0.1:PORT/api/openai/v1
  ASSEGAI_ANTHROPIC_BASE_URL  e.g. http://127.0.0.1:PORT/api/anthropic
  ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN   sent as default headers on every request
  OPENAI_MODEL, ANTHROPIC_MODEL
Prints one JSON object summarising what the libraries returned.
"""

import json
import os
import sys
import warnings

import anthropic
import openai

# The fake upstream serves any model id; deprecation notices for them are noise here.
warnings.filterwarnings("ignore", category=DeprecationWarning)

headers = {
    "X-Assegai-Agent-ID": os.environ["ASSEGAI_AGENT_ID"],
    "X-Assegai-Agent-Token": os.environ["ASSEGAI_AGENT_TOKEN"],
}
openai_model = os.environ["OPENAI_MODEL"]
anthropic_model = os.environ["ANTHROPIC_MODEL"]
prompt = [{"role": "user", "content": "Say hello."}]
summary = {"versions": {"openai": openai.__version__, "anthropic": anthropic.__version__}}

# The agent holds no provider key: any dummy value satisfies the libraries, the proxy replaces it.
oa = openai.OpenAI(
    base_url=os.environ["ASSEGAI_OPENAI_BASE_URL"],
    api_key="sk-agent-dummy-openai",
    default_headers=headers,
    max_retries=0,
    timeout=30,
)

chat = oa.chat.completions.create(model=openai_model, messages=prompt)
summary["openai_chat"] = {
    "content": chat.choices[0].message.content,
    "model": chat.model,
    "usage": chat.usage.model_dump(),
}

pieces, chunks, usage_chunks = [], 0, 0
for chunk in oa.chat.completions.create(model=openai_model, messages=prompt, stream=True):
    chunks += 1
    if chunk.usage is not None or not chunk.choices:
        usage_chunks += 1
        continue
    pieces.append(chunk.choices[0].delta.content or "")
summary["openai_stream"] = {"content": "".join(pieces), "chunks": chunks, "usage_chunks": usage_chunks}

pieces, usage = [], None
for chunk in oa.chat.completions.create(
    model=openai_model, messages=prompt, stream=True, stream_options={"include_usage": True}
):
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
summary["openai_stream_with_usage"] = {"content": "".join(pieces), "usage": usage}

try:
    oa.chat.completions.create(model="error-400", messages=prompt)
    summary["openai_error"] = None
except openai.BadRequestError as e:
    summary["openai_error"] = {"status": e.status_code, "body": e.body}

an = anthropic.Anthropic(
    base_url=os.environ["ASSEGAI_ANTHROPIC_BASE_URL"],
    api_key="sk-ant-agent-dummy",
    default_headers=headers,
    max_retries=0,
    timeout=30,
)

msg = an.messages.create(model=anthropic_model, max_tokens=256, messages=prompt)
summary["anthropic_message"] = {
    "text": "".join(b.text for b in msg.content if b.type == "text"),
    "model": msg.model,
    "usage": msg.usage.model_dump(),
}

events = []
with an.messages.stream(model=anthropic_model, max_tokens=256, messages=prompt) as stream:
    for event in stream:
        events.append(event.type)
    final = stream.get_final_message()
summary["anthropic_stream"] = {
    "text": "".join(b.text for b in final.content if b.type == "text"),
    "events": events,
    "usage": final.usage.model_dump(),
}

try:
    an.messages.create(model="error-400", max_tokens=16, messages=prompt)
    summary["anthropic_error"] = None
except anthropic.BadRequestError as e:
    summary["anthropic_error"] = {"status": e.status_code, "body": e.body}

json.dump(summary, sys.stdout)
print()
