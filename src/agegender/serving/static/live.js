// The page's live mode: webcam frames go to /v1/live over a WebSocket; the server tracks the
// faces, and each face is drawn with its track's colour and its track's steady answer.
"use strict";

const LIVE_COLOURS = ["rgb(230,25,75)", "rgb(60,180,75)", "rgb(0,130,200)", "rgb(245,130,48)",
  "rgb(145,30,180)", "rgb(70,190,190)", "rgb(240,50,230)", "rgb(128,128,0)"];
const LIVE_SIDE = 640;  // frames are sent at most this wide: enough for faces, light to send
const live = { socket: null, stream: null, busy: false, timer: null };
const byId = (id) => document.getElementById(id);

function liveSay(text, isError = false) {
  const line = byId("status");
  line.textContent = text;
  line.className = isError ? "error" : "";
}

async function startLive() {
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    liveSay(`The webcam could not be opened: ${error.message}`, true);
    return;
  }
  const video = byId("live-video");
  video.srcObject = live.stream;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  live.socket = new WebSocket(`${scheme}//${location.host}/v1/live`);
  live.socket.binaryType = "arraybuffer";
  live.socket.onmessage = (event) => showLive(JSON.parse(event.data));
  live.socket.onclose = (event) => {
    if (live.stream) liveSay(`Live mode ended (${event.reason || event.code}).`, true);
    stopLive();
  };
  live.socket.onopen = () => { liveSay("Live: tracking the faces…"); sendFrame(); };
  byId("live").hidden = false;
  byId("live-start").hidden = true;
  byId("live-stop").hidden = false;
}

function stopLive() {
  clearTimeout(live.timer);
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close(1000);
  live.socket = null;
  live.busy = false;
  byId("live-start").hidden = false;
  byId("live-stop").hidden = true;
}

// One frame at a time: the next is taken once the answer to this one has come back, so the
// page never queues frames (the server drops any beyond its bound anyway).
function sendFrame() {
  if (!live.socket || live.socket.readyState !== WebSocket.OPEN || live.busy) return;
  const video = byId("live-video");
  if (!video.videoWidth) { live.timer = setTimeout(sendFrame, 100); return; }
  const scale = Math.min(1, LIVE_SIDE / video.videoWidth);
  const frame = document.createElement("canvas");
  frame.width = Math.round(video.videoWidth * scale);
  frame.height = Math.round(video.videoHeight * scale);
  frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
  live.busy = true;
  frame.toBlob((blob) => {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(blob);
  }, "image/jpeg", 0.85);
  live.pending = frame;
}

function showLive(answer) {
  live.busy = false;
  if (answer.error) liveSay(`${answer.error.code}: ${answer.error.message}`, true);
  if (answer.faces && live.pending) drawLive(live.pending, answer);
  live.timer = setTimeout(sendFrame, 0);
}

function drawLive(frame, answer) {
  const canvas = byId("live-canvas");
  canvas.width = answer.width;
  canvas.height = answer.height;
  const context = canvas.getContext("2d");
  context.drawImage(frame, 0, 0);
  const size = Math.max(12, Math.round(answer.width / 45));
  context.font = `${size}px sans-serif`;
  context.textBaseline = "top";
  const list = byId("live-tracks");
  list.replaceChildren();
  answer.faces.forEach((face) => {
    const [x, y, w, h] = face.box;
    const colour = LIVE_COLOURS[(face.track - 1) % LIVE_COLOURS.length];
    context.lineWidth = 3;
    context.strokeStyle = colour;
    context.strokeRect(x, y, w, h);
    const top = y >= size + 6 ? y - size - 6 : y + h;
    context.fillStyle = colour;
    context.fillRect(x, top, context.measureText(face.label).width + 6, size + 6);
    context.fillStyle = "white";
    context.fillText(face.label, x + 3, top + 3);
    const item = document.createElement("li");
    item.textContent = face.label;
    item.style.color = colour;
    list.append(item);
  });
}

byId("live-start").addEventListener("click", startLive);
byId("live-stop").addEventListener("click", () => { liveSay("Live mode stopped."); stopLive(); });
window.addEventListener("pagehide", stopLive);
