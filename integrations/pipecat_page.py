"""The browser page of the pipecat example (``vlogger.integrations.pipecat_app``): one HTML file.

A video element (the avatar's picture and voice), a connect button that opens the microphone and a
WebRTC connection to ``/api/offer`` (no ICE servers: host candidates only, no STUN), a hang-up
button and a status line. Served as is; no script or style is fetched from anywhere else.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vlogger avatar (pipecat)</title>
<style>
  body { font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 0;
         display: flex; flex-direction: column; align-items: center; gap: 12px; padding: 24px; }
  video { background: #000; max-width: 90vw; max-height: 70vh; border-radius: 8px; }
  button { font-size: 16px; padding: 8px 20px; border-radius: 6px; border: 0; cursor: pointer; }
  #status { min-height: 1.5em; color: #aaa; }
</style>
</head>
<body>
<video id="avatar" autoplay playsinline></video>
<div>
  <button id="connect">Connect</button>
  <button id="hangup" disabled>Hang up</button>
</div>
<div id="status">Press Connect, allow the microphone, then talk.</div>
<script>
"use strict";
const video = document.getElementById("avatar");
const status = document.getElementById("status");
const connectButton = document.getElementById("connect");
const hangupButton = document.getElementById("hangup");
let pc = null;
let mic = null;

function say(text) { status.textContent = text; }

function gathered(peer, timeoutMs) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { peer.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (peer.iceGatheringState === "complete") done(); };
    peer.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

async function connect() {
  connectButton.disabled = true;
  try {
    say("Opening the microphone...");
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    pc = new RTCPeerConnection({ iceServers: [] });
    const stream = new MediaStream();
    video.srcObject = stream;
    pc.ontrack = (e) => { stream.addTrack(e.track); };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      say(state === "connected" ? "Connected: say something." : "Connection: " + state);
      if (pc.connectionState === "failed" || pc.connectionState === "closed") hangup();
    };
    pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    say("Connecting...");
    const r = await fetch("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    await pc.setRemoteDescription(body);
    hangupButton.disabled = false;
  } catch (err) {
    say("Could not connect: " + err.message);
    hangup();
  }
}

function hangup() {
  if (pc) { pc.close(); pc = null; }
  if (mic) { mic.getTracks().forEach((t) => t.stop()); mic = null; }
  video.srcObject = null;
  connectButton.disabled = false;
  hangupButton.disabled = true;
}

connectButton.onclick = connect;
hangupButton.onclick = () => { hangup(); say("Hung up."); };
</script>
</body>
</html>
"""
