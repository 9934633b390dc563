// imgserve playground. Plain JavaScript, no dependencies: every request
// goes to this page's own origin, through the public API.
"use strict";

const $ = (id) => document.getElementById(id);

// ---- the API ----

// ApiError carries the server's own message.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// api sends a request and returns the response with its body read as
// type ("json" or "blob"); a failed request throws ApiError with the
// server's message (the task API's {"error": {"message"}} or KServe's
// {"error": "..."}).
async function api(method, path, { body, headers = {}, as = "json" } = {}) {
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  let resp;
  try {
    resp = await fetch(path, { method, body, headers, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "The server could not be reached: " + e.message);
  }
  if (!resp.ok) {
    const text = await resp.text();
    let msg = "";
    try {
      const j = JSON.parse(text);
      msg = typeof j.error === "string" ? j.error : (j.error && j.error.message) || "";
    } catch (_) {
      msg = text.trim();
    }
    throw new ApiError(resp.status, `${resp.status} ${resp.statusText}: ${msg || "the server gave no message"}`);
  }
  const data = as === "blob" ? await resp.blob() : await resp.json();
  return { data, timing: resp.headers.get("Server-Timing") || "", headers: resp.headers };
}

function showError(id, err) {
  const el = $(id);
  if (!err) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.textContent = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  el.hidden = false;
}

// run disables a form's buttons while its request is out and reports a
// failure in the section's error box.
async function run(form, errorId, fn) {
  const buttons = form ? form.querySelectorAll("button") : [];
  buttons.forEach((b) => (b.disabled = true));
  showError(errorId, null);
  try {
    await fn();
  } catch (e) {
    showError(errorId, e);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// ---- Server-Timing ----

function parseServerTiming(header) {
  const out = [];
  for (const part of header.split(",")) {
    const [name, ...params] = part.trim().split(";");
    if (!name) continue;
    let dur = 0;
    for (const p of params) {
      const [k, v] = p.trim().split("=");
      if (k === "dur") dur = parseFloat(v) || 0;
    }
    out.push({ name: name.trim(), dur });
  }
  return out;
}

// showTiming draws the stages as one bar, and lists them as text.
function showTiming(id, header) {
  const el = $(id);
  el.replaceChildren();
  const stages = parseServerTiming(header);
  if (stages.length === 0) return;
  const total = stages.reduce((s, x) => s + x.dur, 0) || 1;
  const heading = document.createElement("div");
  heading.textContent = `Server time ${total.toFixed(1)} ms, by stage (Server-Timing):`;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("aria-hidden", "true");
  const list = document.createElement("ul");
  stages.forEach((s, i) => {
    const seg = document.createElement("span");
    seg.className = "stage-" + (i % 8);
    seg.style.width = (100 * s.dur) / total + "%";
    seg.title = `${s.name} ${s.dur.toFixed(1)} ms`;
    bar.append(seg);
    const li = document.createElement("li");
    li.className = "stage-" + (i % 8);
    li.textContent = `${s.name} ${s.dur.toFixed(1)} ms`;
    list.append(li);
  });
  el.append(heading, bar, list);
}

// ---- images ----

// pickImage wires a file input and its drop zone; onFile gets each chosen
// File (or the list, when the input takes several).
function pickImage(inputId, dropId, onFiles) {
  const input = $(inputId);
  const drop = $(dropId);
  input.addEventListener("change", () => input.files.length && onFiles(input.files));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (!e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    onFiles(input.files);
  });
}

// Object URLs of a section's images, revoked when it shows new ones.
const urls = new Map();
function objectURL(slot, blob) {
  if (urls.has(slot)) URL.revokeObjectURL(urls.get(slot));
  const u = URL.createObjectURL(blob);
  urls.set(slot, u);
  return u;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not show this image"));
    img.src = src;
  });
}

// compare builds a before/after view: the result over the original,
// revealed from the slider's position to the right.
function compare(id, beforeURL, afterURL, afterLabel, afterClass) {
  const box = $(id);
  box.replaceChildren();
  const before = new Image();
  before.className = "before";
  before.alt = "Before";
  before.src = beforeURL;
  const after = new Image();
  after.className = "after " + (afterClass || "");
  after.alt = afterLabel;
  after.src = afterURL;
  const divider = document.createElement("div");
  divider.className = "divider";
  const l = document.createElement("span");
  l.className = "tag left";
  l.textContent = "before";
  const r = document.createElement("span");
  r.className = "tag right";
  r.textContent = "after";
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  slider.max = "100";
  slider.value = "50";
  slider.id = id + "-slider";
  slider.setAttribute("aria-label", "Before/after divider position (percent from the left)");
  const set = () => {
    const p = Number(slider.value);
    after.style.clipPath = `inset(0 0 0 ${p}%)`;
    divider.style.left = `calc(${p}% - 1px)`;
  };
  slider.addEventListener("input", set);
  set();
  const stage = document.createElement("div");
  stage.className = "stage";
  stage.append(before, after, divider, l, r);
  box.append(stage, slider);
  return { before, after, slider };
}

// ---- models ----

let modelList = [];

async function loadModels() {
  await run(null, "models-error", async () => {
    const { data } = await api("GET", "/v1/models");
    modelList = data.models || [];
    const body = $("models-table").tBodies[0];
    body.replaceChildren();
    for (const m of modelList) {
      const tr = document.createElement("tr");
      const cells = [m.name, m.task, m.status, m.status === "ready" ? "" : m.reason || ""];
      const labels = ["Model", "Task", "State", "Why unavailable"];
      cells.forEach((c, i) => {
        const td = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) td.scope = "row";
        td.dataset.label = labels[i];
        td.textContent = c;
        if (i === 2) td.className = "state-" + m.status;
        if (i === 3) td.className = "reason";
        tr.append(td);
      });
      body.append(tr);
    }
    // Each section's model list: the models of its task, ready ones
    // selectable, the others shown with their state.
    document.querySelectorAll("select[data-task]").forEach((sel) => {
      const keep = sel.value;
      sel.replaceChildren(new Option("server default", ""));
      for (const m of modelList.filter((m) => m.task === sel.dataset.task)) {
        const o = new Option(m.status === "ready" ? m.name : `${m.name} (${m.status})`, m.name);
        o.disabled = m.status !== "ready";
        sel.append(o);
      }
      sel.value = keep;
      if (sel.selectedIndex < 0) sel.value = "";
    });
  });
}

// ---- background removal ----

let rbFile = null;

function setupBackground() {
  pickImage("rb-file", "rb-drop", (files) => (rbFile = files[0]));
  const applyBackground = () => {
    const after = document.querySelector("#rb-compare img.after");
    if (!after) return;
    const colour = $("rb-bg-colour").checked;
    after.classList.toggle("checker", !colour);
    after.style.backgroundColor = colour ? $("rb-colour").value : "";
  };
  for (const id of ["rb-bg-checker", "rb-bg-colour"]) $(id).addEventListener("change", applyBackground);
  $("rb-colour").addEventListener("input", () => {
    $("rb-bg-colour").checked = true;
    applyBackground();
  });
  $("rb-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "rb-error", async () => {
      if (!rbFile) throw new Error("Choose an image first.");
      const fd = new FormData();
      fd.append("image", rbFile);
      if ($("rb-model").value) fd.append("model", $("rb-model").value);
      if ($("rb-post").checked) fd.append("post_process", "true");
      if ($("rb-alpha").checked) fd.append("alpha_matting", "true");
      $("rb-result").hidden = true;
      const { data, timing } = await api("POST", "/v1/remove-background", { body: fd, as: "blob" });
      const before = objectURL("rb-before", rbFile);
      const after = objectURL("rb-after", data);
      const { after: img } = compare("rb-compare", before, after, "Cut-out", "checker");
      await img.decode().catch(() => {});
      $("rb-download").href = after;
      $("rb-meta").textContent = `Cut-out ${img.naturalWidth}×${img.naturalHeight} PNG, ${(data.size / 1024).toFixed(1)} KiB`;
      showTiming("rb-timing", timing);
      applyBackground();
      $("rb-result").hidden = false;
    });
  });
}

// ---- inpainting ----

// The marks are strokes and boxes in image pixels, drawn again from the
// list after an undo.
const ip = { file: null, image: null, marks: [], drawing: null };

function ipDraw() {
  const c = $("ip-canvas");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = g.strokeStyle = "rgba(230, 30, 60, 0.55)";
  for (const m of ip.marks.concat(ip.drawing ? [ip.drawing] : [])) paintMark(g, m);
  const strokes = ip.marks.filter((m) => m.kind === "stroke").length;
  const boxes = ip.marks.length - strokes;
  $("ip-marks").textContent = ip.marks.length === 0 ? "Nothing marked yet." : `${strokes} brush stroke(s), ${boxes} box(es) marked.`;
}

function paintMark(g, m) {
  if (m.kind === "box") {
    const [x, y, w, h] = m.box;
    g.fillRect(x, y, w, h);
    return;
  }
  g.lineWidth = m.size;
  g.lineCap = g.lineJoin = "round";
  g.beginPath();
  g.moveTo(m.points[0][0], m.points[0][1]);
  for (const [x, y] of m.points) g.lineTo(x, y);
  if (m.points.length === 1) g.lineTo(m.points[0][0] + 0.01, m.points[0][1]);
  g.stroke();
}

// ipMask renders the marks as a black and white PNG the image's size.
function ipMask() {
  const c = document.createElement("canvas");
  c.width = ip.image.naturalWidth;
  c.height = ip.image.naturalHeight;
  const g = c.getContext("2d");
  g.fillStyle = "#000";
  g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = g.strokeStyle = "#fff";
  for (const m of ip.marks) paintMark(g, m);
  return new Promise((resolve) => c.toBlob(resolve, "image/png"));
}

function ipPoint(e) {
  const c = $("ip-canvas");
  const r = c.getBoundingClientRect();
  const x = ((e.clientX - r.left) * c.width) / r.width;
  const y = ((e.clientY - r.top) * c.height) / r.height;
  return [Math.round(Math.max(0, Math.min(c.width, x))), Math.round(Math.max(0, Math.min(c.height, y)))];
}

function setupInpaint() {
  pickImage("ip-file", "ip-drop", async (files) => {
    ip.file = files[0];
    ip.marks = [];
    showError("ip-error", null);
    const img = $("ip-image");
    img.src = objectURL("ip-before", ip.file);
    try {
      await img.decode();
    } catch (_) {
      // The server says what is wrong with it when it is sent.
      $("ip-paint").hidden = true;
      ip.image = null;
      return;
    }
    ip.image = img;
    const c = $("ip-canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    $("ip-paint").hidden = false;
    ipDraw();
  });
  const c = $("ip-canvas");
  const tool = () => ($("ip-tool-box").checked ? "box" : "brush");
  c.addEventListener("pointerdown", (e) => {
    if (!ip.image || e.button !== 0) return;
    c.setPointerCapture(e.pointerId);
    const p = ipPoint(e);
    ip.drawing = tool() === "box" ? { kind: "box", from: p, box: [p[0], p[1], 0, 0] } : { kind: "stroke", size: Number($("ip-size").value), points: [p] };
    ipDraw();
  });
  c.addEventListener("pointermove", (e) => {
    if (!ip.drawing) return;
    const p = ipPoint(e);
    if (ip.drawing.kind === "box") {
      const [x0, y0] = ip.drawing.from;
      ip.drawing.box = [Math.min(x0, p[0]), Math.min(y0, p[1]), Math.abs(p[0] - x0), Math.abs(p[1] - y0)];
    } else {
      ip.drawing.points.push(p);
    }
    ipDraw();
  });
  const end = () => {
    if (!ip.drawing) return;
    const d = ip.drawing;
    ip.drawing = null;
    if (d.kind === "stroke" || (d.box[2] > 0 && d.box[3] > 0)) ip.marks.push(d);
    ipDraw();
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("ip-undo").addEventListener("click", () => {
    ip.marks.pop();
    ipDraw();
  });
  $("ip-clear").addEventListener("click", () => {
    ip.marks = [];
    ipDraw();
  });
  $("ip-addbox").addEventListener("click", () => {
    showError("ip-error", null);
    if (!ip.image) return showError("ip-error", new Error("Choose an image first."));
    const box = ["ip-bx", "ip-by", "ip-bw", "ip-bh"].map((id) => Math.round(Number($(id).value)));
    if (box.some((v) => !Number.isFinite(v) || v < 0) || box[2] < 1 || box[3] < 1) return showError("ip-error", new Error("A box needs x, y ≥ 0 and a width and height of at least 1."));
    ip.marks.push({ kind: "box", box });
    ipDraw();
  });
  $("ip-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "ip-error", async () => {
      if (!ip.file) throw new Error("Choose an image first.");
      const fd = new FormData();
      fd.append("image", ip.file);
      if ($("ip-model").value) fd.append("model", $("ip-model").value);
      let path = "/v1/inpaint";
      if (ip.image && ip.marks.length > 0 && ip.marks.every((m) => m.kind === "box")) {
        path = "/v1/remove-watermark";
        fd.append("boxes", JSON.stringify(ip.marks.map((m) => m.box)));
      } else if (ip.image) {
        if (ip.marks.length === 0) throw new Error("Paint over what should go, or draw a box, first.");
        fd.append("mask", await ipMask(), "mask.png");
      } else {
        // An image the browser cannot show: send it with an empty mask
        // and let the server say what is wrong with it.
        fd.append("boxes", "[[0,0,1,1]]");
        path = "/v1/remove-watermark";
      }
      $("ip-result").hidden = true;
      const { data, timing } = await api("POST", path, { body: fd, as: "blob" });
      const after = objectURL("ip-after", data);
      compare("ip-compare", urls.get("ip-before"), after, "Inpainted");
      $("ip-download").href = after;
      $("ip-meta").textContent = `${path}: ${(data.size / 1024).toFixed(1)} KiB ${data.type}`;
      showTiming("ip-timing", timing);
      $("ip-result").hidden = false;
    });
  });
}

// ---- captioning ----

let cpFile = null;

function setupCaption() {
  pickImage("cp-file", "cp-drop", (files) => (cpFile = files[0]));
  $("cp-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "cp-error", async () => {
      if (!cpFile) throw new Error("Choose an image first.");
      const fd = new FormData();
      fd.append("image", cpFile);
      if ($("cp-model").value) fd.append("model", $("cp-model").value);
      fd.append("max_new_tokens", $("cp-tokens").value);
      fd.append("num_beams", $("cp-beams").value);
      $("cp-result").hidden = true;
      const { data, timing } = await api("POST", "/v1/caption", { body: fd });
      $("cp-image").src = objectURL("cp-image", cpFile);
      $("cp-text").textContent = data.caption;
      $("cp-meta").textContent = `${data.model}, ${data.tokens} tokens`;
      showTiming("cp-timing", timing);
      $("cp-result").hidden = false;
    });
  });
}

// ---- search ----

// Thumbnails of the images added from this page, by id: the server keeps
// vectors only.
const thumbs = new Map();

function itemID(name) {
  const base = name.replace(/\.[^.]*$/, "") || name;
  return base.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "image";
}

function collectionPath() {
  const c = $("cs-collection").value.trim();
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(c)) throw new Error("A collection name is 1 to 64 of A-Z a-z 0-9 _ . -");
  return "/v1/collections/" + encodeURIComponent(c);
}

function setupSearch() {
  let files = null;
  pickImage("cs-files", "cs-drop", (f) => (files = f));
  $("cs-add-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "cs-error", async () => {
      if (!files || files.length === 0) throw new Error("Choose images to add first.");
      const base = collectionPath();
      let last;
      for (const f of files) {
        const id = itemID(f.name);
        const fd = new FormData();
        fd.append("image", f);
        if ($("cs-model").value) fd.append("model", $("cs-model").value);
        fd.append("metadata", JSON.stringify({ file: f.name }));
        last = await api("PUT", `${base}/items/${encodeURIComponent(id)}`, { body: fd });
        thumbs.set(id, objectURL("thumb-" + id, f));
      }
      $("cs-added").textContent = `Added ${files.length} image(s); the collection holds ${last.data.count}.`;
      showTiming("cs-timing", last.timing);
    });
  });
  $("cs-text").addEventListener("input", () => ($("cs-by-text").checked = true));
  $("cs-qimage").addEventListener("change", () => ($("cs-by-image").checked = true));
  $("cs-query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "cs-error", async () => {
      const base = collectionPath();
      const k = Number($("cs-k").value) || 8;
      const model = $("cs-model").value;
      let resp;
      if ($("cs-by-image").checked) {
        const f = $("cs-qimage").files[0];
        if (!f) throw new Error("Choose a query image first.");
        const fd = new FormData();
        fd.append("image", f);
        fd.append("k", String(k));
        if (model) fd.append("model", model);
        resp = await api("POST", base + "/search", { body: fd });
      } else {
        const text = $("cs-text").value.trim();
        if (!text) throw new Error("Type a query first.");
        const q = { text, k };
        if (model) q.model = model;
        resp = await api("POST", base + "/search", { body: JSON.stringify(q), headers: { "Content-Type": "application/json" } });
      }
      const grid = $("cs-grid");
      grid.replaceChildren();
      for (const hit of resp.data.results) {
        const li = document.createElement("li");
        li.dataset.id = hit.id;
        if (thumbs.has(hit.id)) {
          const img = new Image();
          img.src = thumbs.get(hit.id);
          img.alt = hit.id;
          li.append(img);
        }
        const id = document.createElement("div");
        id.className = "id";
        id.textContent = hit.id;
        const score = document.createElement("div");
        score.className = "score";
        score.textContent = "score " + hit.score.toFixed(4);
        li.append(id, score);
        grid.append(li);
      }
      if (resp.data.results.length === 0) {
        const li = document.createElement("li");
        li.textContent = "The collection is empty.";
        grid.append(li);
      }
      showTiming("cs-timing", resp.timing);
      $("cs-result").hidden = false;
    });
  });
}

// ---- generation ----

function base64Blob(b64, type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type });
}

function setupGenerate() {
  $("gn-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(e.target, "gn-error", async () => {
      const req = { prompt: $("gn-prompt").value, response_format: "b64_json", n: Number($("gn-n").value) || 1 };
      if ($("gn-model").value) req.model = $("gn-model").value;
      if ($("gn-size").value) req.size = $("gn-size").value;
      if ($("gn-steps").value) req.steps = Number($("gn-steps").value);
      if ($("gn-seed").value !== "") req.seed = Number($("gn-seed").value);
      $("gn-result").hidden = true;
      const { data, timing } = await api("POST", "/v1/images/generations", {
        body: JSON.stringify(req),
        headers: { "Content-Type": "application/json" },
      });
      const grid = $("gn-grid");
      grid.replaceChildren();
      for (const d of data.data) {
        const u = objectURL("gen-" + d.index, base64Blob(d.b64_json, "image/" + data.output_format));
        const li = document.createElement("li");
        const img = new Image();
        img.src = u;
        img.alt = `Generated image ${d.index + 1}`;
        const a = document.createElement("a");
        a.href = u;
        a.download = `generated-${d.seed}.${data.output_format === "jpeg" ? "jpg" : "png"}`;
        a.textContent = `Download (seed ${d.seed})`;
        li.append(img, a);
        grid.append(li);
      }
      const withheld = (data.withheld || []).length;
      $("gn-meta").textContent = `${data.model}, ${data.size}, ${data.steps} steps` + (withheld ? `; ${withheld} image(s) withheld by the NSFW check` : "");
      showTiming("gn-timing", timing);
      $("gn-result").hidden = false;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("models-refresh").addEventListener("click", loadModels);
  setupBackground();
  setupInpaint();
  setupCaption();
  setupSearch();
  setupGenerate();
  loadModels();
});
