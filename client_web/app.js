// vlogger page: one WebSocket session (/ws) + one receive-only RTCPeerConnection.
// Protocol: docs/protocol.md. Plain modern JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  video: $("video"), stats: $("stats"), conn: $("conn"), sound: $("sound"), form: $("say-form"),
  text: $("text"), interrupt: $("interrupt"), photo: $("photo"), reconnect: $("reconnect"),
  errors: $("errors"), utterances: $("utterances"), mic: $("mic"), heard: $("heard"), user: $("user"),
};

// Read by tests (tests/test_browser.py) and handy in the console.
const state = (window.vlogger = {
  ws: null, pc: null, session: null, connection: "idle", lastStats: null, utterances: {}, errors: [],
  maxBytes: 8 * 1024 * 1024, maxChars: 20000, nextId: 1,
  micWanted: new URLSearchParams(location.search).has("mic"), mic: null, user: "silent", transcripts: [],
});

function setConnection(s, label) {
  state.connection = s;
  ui.conn.dataset.state = s;
  ui.conn.textContent = label || s;
}

function showError(message, code) {
  state.errors.push({ code, message });
  const p = document.createElement("p");
  p.textContent = code ? `${message} (${code})` : message;
  ui.errors.prepend(p);
  while (ui.errors.children.length > 5) ui.errors.lastChild.remove();
}

function send(obj) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    showError("not connected to the server");
    return false;
  }
  state.ws.send(JSON.stringify(obj));
  return true;
}

function utteranceRow(id, text) {
  let li = ui.utterances.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = id;
    li.innerHTML = '<span class="text"></span><span class="state"></span>';
    ui.utterances.prepend(li);
    while (ui.utterances.children.length > 50) ui.utterances.lastChild.remove();
  }
  if (text !== undefined) li.querySelector(".text").textContent = text;
  return li;
}

function onUtterance(m) {
  state.utterances[m.id] = m.state;
  const li = utteranceRow(m.id);
  li.dataset.state = m.state;
  li.querySelector(".state").textContent = m.state;
}

function onStats(m) {
  state.lastStats = m;
  const v = ui.video;
  ui.stats.textContent =
    `${m.width}×${m.height}  sent ${m.fps.toFixed(1)} fps (rendered ${m.fps_rendered.toFixed(1)})\n` +
    `render ${m.render_ms.toFixed(1)} ms/frame  queue ${m.queue_frames} frames, ${m.queue_utterances} utt\n` +
    `audio buffered ${m.audio_buffer_ms.toFixed(0)} ms` +
    (m.say_to_first_frame_ms != null ? `  say→first frame ${m.say_to_first_frame_ms.toFixed(0)} ms` : "") +
    (v.videoWidth ? `\nshown ${v.videoWidth}×${v.videoHeight}` : "");
}

async function waitForIce(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function startPeer(iceServers) {
  // No STUN/TURN unless the server names some: nothing leaves the machine by default.
  const pc = new RTCPeerConnection({ iceServers: iceServers || [] });
  state.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  let micTrack = null;
  if (state.micWanted) {
    try {
      // echo cancellation keeps the avatar's own voice out of what the server hears
      state.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      micTrack = state.mic.getAudioTracks()[0];
    } catch (err) {
      showError(`no microphone: ${err}`);
      state.micWanted = false;
    }
  }
  if (micTrack) pc.addTransceiver(micTrack, { direction: "sendrecv" });
  else pc.addTransceiver("audio", { direction: "recvonly" });
  ui.mic.textContent = micTrack ? "Mic on" : "Mic off";
  const stream = new MediaStream();
  ui.video.srcObject = stream;
  pc.ontrack = (e) => stream.addTrack(e.track);
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    setConnection(s === "connected" ? "connected" : s, s === "connected" ? "live" : s);
    if (s === "failed") showError("the media connection failed (no ICE path to the server)");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc, 3000); // the offer carries every candidate (no trickle)
  send({ type: "offer", sdp: pc.localDescription.sdp });
  setConnection("connecting", "connecting media…");
}

function connect() {
  disconnect();
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  state.ws = ws;
  setConnection("connecting", "connecting…");
  ws.onmessage = async (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    switch (m.type) {
      case "session":
        state.session = m.id;
        state.maxBytes = m.max_message_bytes || state.maxBytes;
        state.maxChars = m.max_say_chars || state.maxChars;
        try { await startPeer(m.ice_servers); } catch (err) { showError(`WebRTC set-up failed: ${err}`); }
        break;
      case "answer":
        await state.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
        break;
      case "utterance": onUtterance(m); break;
      case "stats": onStats(m); break;
      case "avatar": showNote(`new photo in use (${m.width}×${m.height})`); break;
      case "error": showError(m.message, m.code); break;
      case "connection": break;
      case "user":
        state.user = m.state;
        ui.user.textContent = m.state === "speaking" ? "you are speaking…" : "";
        break;
      case "transcript": onTranscript(m); break;
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    setConnection("closed", ev.code === 1009 ? "closed: message too large" : "disconnected");
    if (ev.code === 1009) showError("the server closed the connection: a message was larger than it accepts");
  };
  ws.onerror = async () => {
    // a browser hides the HTTP status of a refused WebSocket: ask the server why
    try {
      const auth = await (await fetch("/auth", { cache: "no-store" })).json();
      if (auth.token_required && !auth.logged_in) {
        showError("this server needs a login: open the one-time link `vlogger serve` printed (…/login?code=…), or /login?token=YOUR_TOKEN");
        return;
      }
    } catch { /* the server itself is unreachable */ }
    showError("cannot reach the server");
  };
}

function onTranscript(m) {
  if (!m.final) { ui.user.textContent = `… ${m.text}`; return; }
  state.transcripts.push(m.text);
  const li = document.createElement("li");
  li.textContent = m.text;
  ui.heard.prepend(li);
  while (ui.heard.children.length > 20) ui.heard.lastChild.remove();
}

function disconnect() {
  if (state.mic) { state.mic.getTracks().forEach((t) => t.stop()); state.mic = null; }
  if (state.pc) { state.pc.close(); state.pc = null; }
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
}

function showNote(text) {
  const p = document.createElement("p");
  p.textContent = text;
  p.style.borderLeftColor = "var(--ok)";
  ui.errors.prepend(p);
  setTimeout(() => p.remove(), 5000);
}

function enableSound() {
  ui.video.muted = false;
  ui.video.play().catch(() => {});
  ui.sound.textContent = "Sound on";
}

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return showError("type something to say first");
  if (text.length > state.maxChars) return showError(`the text is longer than ${state.maxChars} characters`);
  enableSound(); // a click is the user gesture browsers want before playing sound
  const id = `u${state.nextId++}`;
  if (send({ type: "say", id, text })) utteranceRow(id, text.length > 80 ? text.slice(0, 80) + "…" : text);
});
ui.text.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ui.form.requestSubmit();
});
ui.interrupt.addEventListener("click", () => send({ type: "interrupt" }));
ui.reconnect.addEventListener("click", connect);
ui.mic.addEventListener("click", () => { // the microphone joins the peer connection: reconnect with it
  state.micWanted = !state.micWanted;
  enableSound();
  connect();
});
ui.sound.addEventListener("click", () => {
  if (ui.video.muted) enableSound();
  else { ui.video.muted = true; ui.sound.textContent = "Sound off"; }
});
ui.photo.addEventListener("change", () => {
  const file = ui.photo.files[0];
  ui.photo.value = "";
  if (!file) return;
  if (Math.ceil(file.size / 3) * 4 + 64 > state.maxBytes) {
    return showError(`the photo is too large (${(file.size / 1e6).toFixed(1)} MB; the limit is about ${(state.maxBytes * 0.75 / 1e6).toFixed(1)} MB)`);
  }
  const reader = new FileReader();
  reader.onload = () => send({ type: "avatar", image: String(reader.result).split(",")[1] });
  reader.onerror = () => showError("could not read the photo");
  reader.readAsDataURL(file);
});

connect();
