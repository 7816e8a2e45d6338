// The page of `p2p demo`: draw on the canvas, and the server's POST /translate answers with the model's output.
// The canvas holds exactly what the model sees: its size is the model's training size, and the CSS only
// scales it up on the screen. Everything is drawn as ink on white paper, like the outlines the models learn from.
"use strict";

const PAPER = "#ffffff";
const INK = "#000000";
const UNDO_STEPS = 50;
const DEBOUNCE_MS = 250; // a pause this long after a stroke sends the drawing

const $ = (id) => document.getElementById(id);
const canvas = $("drawing");
const context = canvas.getContext("2d", { willReadFrequently: true });
const output = $("output");

const state = {
  tool: "pen",
  last: null, // the previous point of the stroke being drawn, in canvas pixels; null between strokes
  history: [], // canvas snapshots before each change, for undo
  timer: null,
  busy: false, // a request is on its way
  again: false, // the drawing changed while it was
  started: 0,
  shown: 0, // translations shown so far
};

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function fillPaper() {
  context.fillStyle = PAPER;
  context.fillRect(0, 0, canvas.width, canvas.height);
}

function remember() {
  state.history.push(context.getImageData(0, 0, canvas.width, canvas.height));
  if (state.history.length > UNDO_STEPS) state.history.shift();
  $("undo").disabled = false;
}

function undo() {
  const previous = state.history.pop();
  if (previous === undefined) return;
  context.putImageData(previous, 0, 0);
  $("undo").disabled = state.history.length === 0;
  changed();
}

function clearDrawing() {
  remember();
  fillPaper();
  changed();
}

function chooseTool(tool) {
  state.tool = tool;
  $("pen").setAttribute("aria-pressed", String(tool === "pen"));
  $("eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}

// Where a pointer event falls on the canvas, in canvas pixels rather than screen pixels.
function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function colour() {
  return state.tool === "pen" ? INK : PAPER;
}

function dot(point) {
  context.fillStyle = colour();
  context.beginPath();
  context.arc(point.x, point.y, Number($("size").value) / 2, 0, 2 * Math.PI);
  context.fill();
}

function lineTo(point) {
  context.strokeStyle = colour();
  context.lineWidth = Number($("size").value);
  context.lineCap = "round";
  context.lineJoin = "round";
  context.beginPath();
  context.moveTo(state.last.x, state.last.y);
  context.lineTo(point.x, point.y);
  context.stroke();
  state.last = point;
}

function startStroke(event) {
  if (event.button !== 0) return;
  canvas.setPointerCapture(event.pointerId);
  remember();
  state.last = canvasPoint(event);
  dot(state.last);
}

function continueStroke(event) {
  if (state.last === null) return;
  // The browser merges fast movements into one event; the merged points keep quick strokes smooth.
  const merged = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of merged.length > 0 ? merged : [event]) lineTo(canvasPoint(each));
}

function endStroke() {
  if (state.last === null) return;
  state.last = null;
  changed();
}

// The drawing changed: translate it once the user pauses, unless they translate by hand.
function changed() {
  if (!$("live").checked) return;
  clearTimeout(state.timer);
  state.timer = setTimeout(translate, DEBOUNCE_MS);
}

async function translate() {
  clearTimeout(state.timer);
  if (state.busy) {
    state.again = true; // one request at a time; the newest drawing goes when this one is back
    return;
  }
  state.busy = true;
  try {
    const drawing = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("image", drawing, "drawing.png");
    state.started = performance.now();
    const response = await fetch("translate", { method: "POST", body: form });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      say(`The server refused the drawing: ${body.error || response.statusText}`, true);
      return;
    }
    const modelMs = /dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
    show(await response.blob(), modelMs ? Number(modelMs[1]) : null);
  } catch (error) {
    say(`Could not reach the p2p demo server (${error.message}); is it still running?`, true);
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      translate();
    }
  }
}

function show(image, modelMs) {
  const previous = output.getAttribute("src");
  const address = URL.createObjectURL(image);
  output.onload = () => {
    if (previous) URL.revokeObjectURL(previous);
    state.shown += 1;
    output.dataset.shown = String(state.shown); // what the browser test waits for
    const total = Math.round(performance.now() - state.started);
    const model = modelMs === null ? "" : `, of which the model ${Math.round(modelMs)} ms`;
    say(`Translated in ${total} ms${model}.`);
  };
  output.src = address;
  $("save").href = address;
  $("save").setAttribute("aria-disabled", "false");
}

// An uploaded image is scaled to fit the canvas on white paper, and can be drawn over like a drawing.
async function upload() {
  const file = $("upload").files[0];
  $("upload").value = ""; // so that choosing the same file again is a change too
  if (file === undefined) return;
  let picture;
  try {
    picture = await createImageBitmap(file);
  } catch {
    say(`${file.name} is not an image this browser can read; try a PNG or JPEG.`, true);
    return;
  }
  remember();
  fillPaper();
  const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
  const width = picture.width * scale;
  const height = picture.height * scale;
  context.imageSmoothingQuality = "high";
  context.drawImage(picture, (canvas.width - width) / 2, (canvas.height - height) / 2, width, height);
  picture.close();
  changed();
}

async function start() {
  let info;
  try {
    const response = await fetch("info");
    info = await response.json();
  } catch (error) {
    say(`Could not ask the server about its model (${error.message}); reload the page.`, true);
    return;
  }
  const side = info.image_size;
  canvas.width = side;
  canvas.height = side;
  // The pen starts as thin as the lines of outline data sets: the outlines data's are 2 pixels at 256.
  $("size").max = String(Math.max(8, Math.round(side / 8)));
  $("size").value = String(Math.max(1, Math.round(side / 128)));
  $("size-value").textContent = $("size").value;
  $("model").textContent = `${info.checkpoint} · step ${info.step} · ${side} × ${side} · ${info.mode} mode`;
  fillPaper();

  canvas.addEventListener("pointerdown", startStroke);
  canvas.addEventListener("pointermove", continueStroke);
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  $("pen").addEventListener("click", () => chooseTool("pen"));
  $("eraser").addEventListener("click", () => chooseTool("eraser"));
  $("size").addEventListener("input", () => ($("size-value").textContent = $("size").value));
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearDrawing);
  $("upload").addEventListener("change", upload);
  $("translate").addEventListener("click", translate);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") {
      event.preventDefault();
      undo();
    }
  });
  document.body.dataset.ready = "true";
}

start();
