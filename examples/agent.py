"""A chat agent in a few lines: it attaches to a page's session and answers what the user says.

    vlogger serve                      # open http://127.0.0.1:8080/, note the session id
    python examples/agent.py --session ID

Replace ``answer`` with a call to your own model. With ``--token`` the server's token is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from vlogger.runtime.client import connect


def answer(text: str) -> str:
    """The agent's brain: here, a friendly echo with a word count."""
    words = len(text.split())
    return f"You said: {text} That was {words} word{'s' if words != 1 else ''}."


async def main(url: str, session: str | None, token: str | None) -> None:
    async with connect(url, token=token, session=session) as s:
        print(f"attached to session {s.id}", flush=True)
        async for event in s:
            if event["type"] == "transcript" and event["final"]:
                print(f"heard: {event['text']}", flush=True)
                await s.say(answer(event["text"]))
            elif event["type"] == "detached":
                break


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="ws://127.0.0.1:8080/agent")
    p.add_argument("--session", help="session id to attach to (default: create a headless one)")
    p.add_argument("--token", default=os.environ.get("VLOGGER_TOKEN"))
    a = p.parse_args()
    asyncio.run(main(a.url, a.session, a.token))
