// The page of `agegender serve`: send a photo to /v1/predict, draw the faces, list them.
"use strict";

const COLOURS = { female: "rgb(230,60,120)", male: "rgb(40,120,230)" };
const $ = (id) => document.getElementById(id);
const status = $("status");
let stream = null;

function say(text, isError = false) {
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// A failure clears the previous photo's result, so no old faces stand beside a new error.
function clearResult() {
  $("result").hidden = true;
  $("faces").querySelector("tbody").replaceChildren();
  const canvas = $("canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

function fail(what, reason) {
  clearResult();
  say(`${what} failed: ${reason}`, true);
}

async function analyse(blob) {
  const name = blob.name || "the photo";
  say(`Analysing ${name}…`);
  const form = new FormData();
  form.append("image", blob, blob.name || "photo");
  let answer;
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const reason = answer.error ? answer.error.message : response.statusText;
      fail(`Analysing ${name}`, `${response.status}, ${reason}`);
      return;
    }
  } catch (error) {
    fail(`Analysing ${name}`, `the server did not answer (${error.message || error})`);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
  } catch (error) {
    fail(`Showing ${name}`, "this browser cannot draw the image");
    return;
  }
  show(bitmap, answer);
}

function show(bitmap, answer) {
  const canvas = $("canvas");
  canvas.width = answer.width;
  canvas.height = answer.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, answer.width, answer.height);
  const line = Math.max(2, Math.round(Math.max(answer.width, answer.height) / 400));
  const size = Math.max(12, Math.round(Math.max(answer.width, answer.height) / 50));
  context.font = `${size}px sans-serif`;
  context.textBaseline = "top";
  const rows = $("faces").querySelector("tbody");
  rows.replaceChildren();
  answer.faces.forEach((face) => {
    const [x, y, w, h] = face.box;
    const colour = COLOURS[face.gender] || "orange";
    context.lineWidth = line;
    context.strokeStyle = colour;
    context.strokeRect(x, y, w, h);
    const text = `${face.face}: ${face.gender[0].toUpperCase()} ${Math.round(face.age)}`;
    const width = context.measureText(text).width + 2 * line;
    const top = y >= size + 2 * line ? y - size - 2 * line : y + h;
    context.fillStyle = colour;
    context.fillRect(x, top, width, size + 2 * line);
    context.fillStyle = "white";
    context.fillText(text, x + line, top + line);
    rows.append(faceRow(face));
  });
  $("result").hidden = false;
  say(answer.faces.length === 1 ? "1 face found." : `${answer.faces.length} faces found.`);
}

// The face numbers are the API's (and the CLI's): from 0, largest first.
function faceRow(face) {
  const cells = [
    String(face.face),
    face.age.toFixed(1),
    face.age_low === null ? "–" : `${face.age_low.toFixed(1)}–${face.age_high.toFixed(1)}`,
    face.gender,
    face.gender_prob.toFixed(2),
    face.det_score === null ? "–" : face.det_score.toFixed(3),
    face.box.join(", "),
  ];
  const row = document.createElement("tr");
  cells.forEach((text, column) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (column === 3) cell.className = face.gender;
    row.append(cell);
  });
  return row;
}

function pick(files) {
  if (files && files.length) analyse(files[0]);
}

const drop = $("drop");
$("file").addEventListener("change", (event) => pick(event.target.files));
["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => pick(event.dataTransfer.files));

function cameraButtons(on) {
  $("camera-start").hidden = on;
  $("camera-shoot").hidden = true; // until the video has a size (see "loadedmetadata")
  $("camera-stop").hidden = !on;
  $("camera").hidden = !on;
}

$("camera").addEventListener("loadedmetadata", () => {
  $("camera-shoot").hidden = stream === null;
});

$("camera-start").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (error) {
    fail("Starting the webcam", error.message || String(error));
    return;
  }
  $("camera").srcObject = stream;
  cameraButtons(true);
});

function stopCamera() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  cameraButtons(false);
}

$("camera-stop").addEventListener("click", stopCamera);
$("camera-shoot").addEventListener("click", () => {
  const video = $("camera");
  const frame = document.createElement("canvas");
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext("2d").drawImage(video, 0, 0);
  frame.toBlob((blob) => {
    stopCamera();
    if (!blob) {
      fail("Taking the photo", "the webcam gave no picture");
      return;
    }
    analyse(new File([blob], "webcam.jpg", { type: "image/jpeg" }));
  }, "image/jpeg", 0.92);
});
