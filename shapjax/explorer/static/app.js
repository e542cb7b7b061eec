// shapjax explorer page: plain JavaScript over the JSON API (no framework, nothing from the network).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { view: null, ids: [], settings: [], token: 0, marks: { segments: new Set(), strokes: [] },
                alternative: null, drawing: false };

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, v);
  return q.toString();
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.style.color = isError ? "#b00020" : "";
}

async function init() {
  const [health, images] = await Promise.all([api("/api/health"), api("/api/images")]);
  state.ids = images.images;
  state.settings = health.settings;
  $("model").textContent = `model ${health.model} · ${health.n_images} images · policy ${health.policy}`;
  $("feedback-count").textContent = `${health.n_feedback} verdicts`;
  const sel = $("sel-setting");
  for (const s of health.settings) {
    const o = document.createElement("option");
    o.value = s.name;
    o.textContent = `${s.method_label} · ${s.segmentation} · ${s.masker}`;
    sel.appendChild(o);
  }
  wire();
  await load({ image_id: state.ids[0] });
}

async function load(params) {
  const token = ++state.token;
  clearMarks();
  $("overlay-wait").hidden = false;
  $("overlay").dataset.ready = "0";
  let view;
  try {
    view = await api("/api/next?" + query({ maps: 1, ...params }));
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  if (token !== state.token) return;
  state.view = view;
  render(view);
  let exp = view.explanation;
  while (exp.status === "pending" && token === state.token) {
    try {
      exp = await api(exp.data_url + "&wait=30");
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
  }
  if (token !== state.token) return;
  view.explanation = exp;
  showExplanation(exp);
}

function render(v) {
  $("image").src = v.image_url;
  $("image-title").textContent = `${v.image_id}  (${v.index + 1} / ${v.n_images})`;
  $("label").textContent = v.label ? `· label ${v.label.name}` : "";
  $("class-name").textContent = v.class.name;
  $("class-name").dataset.index = v.class.index;
  const ol = $("top5");
  ol.innerHTML = "";
  for (const c of v.classes) {
    const li = document.createElement("li");
    li.dataset.index = c.index;
    li.className = c.index === v.class.index ? "selected" : "";
    li.innerHTML = `<span class="cname"></span> <span class="prob">${(100 * c.probability).toFixed(1)}%</span>` +
      `<span class="pbar" style="width:${Math.max(1, 120 * c.probability)}px"></span>`;
    li.querySelector(".cname").textContent = c.name;
    li.onclick = () => load({ image_id: v.image_id, class: c.index, setting: v.setting.name });
    ol.appendChild(li);
  }
  const sc = $("sel-class");
  sc.innerHTML = "";
  for (const c of v.classes) {
    const o = document.createElement("option");
    o.value = c.index;
    o.textContent = `${c.name} (${(100 * c.probability).toFixed(1)}%)`;
    sc.appendChild(o);
  }
  sc.value = v.class.index;
  $("sel-setting").value = v.setting.name;
  $("setting-method").textContent = v.setting.method_label;
  $("setting-segments").textContent = v.setting.segmentation;
  $("setting-masker").textContent = v.setting.masker;
  $("setting-name").textContent = v.setting.name;
  $("reason").textContent = v.choice.reason;
  const pt = $("posteriors");
  pt.innerHTML = "<tr><th>setting</th><th>👍</th><th>👎</th><th>pooled 👍/👎</th><th>mean</th><th>draw</th></tr>";
  for (const p of v.choice.posteriors) {
    const tr = document.createElement("tr");
    const draw = v.choice.draws[p.setting];
    tr.innerHTML = `<td></td><td>${p.ups}</td><td>${p.downs}</td><td>${p.pooled_ups}/${p.pooled_downs}</td>` +
      `<td>${p.mean.toFixed(2)}</td><td>${draw === undefined ? "" : draw.toFixed(2)}</td>`;
    tr.firstChild.textContent = p.setting;
    if (p.setting === v.setting.name) tr.style.fontWeight = "700";
    pt.appendChild(tr);
  }
  if (!$("compare").hidden) showCompare();
}

function showExplanation(exp) {
  if (exp.status === "error") {
    $("overlay-wait").textContent = "failed: " + exp.error;
    return;
  }
  const img = $("overlay");
  img.onload = () => {
    $("overlay-wait").hidden = true;
    img.dataset.ready = "1";
  };
  img.src = exp.png_url;
  $("limit").textContent = `colour scale ±${exp.limit.toPrecision(3)} (${exp.method}, ${exp.seconds}s)`;
}

async function verdict(v) {
  const view = state.view;
  if (!view || view.explanation.status !== "ready") {
    setStatus("wait for the explanation first", true);
    return;
  }
  const regions = [...state.marks.segments, ...state.marks.strokes];
  const body = { image_id: view.image_id, class: view.class.index, setting: view.setting.name, verdict: v,
                 regions, chosen_by: view.choice.policy };
  let out;
  try {
    out = await api("/api/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify(body) });
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  $("feedback-count").textContent = `${out.n_feedback} verdicts`;
  const marked = out.marked_pixels ? ` with ${out.marked_pixels} marked pixels` : "";
  setStatus(`saved #${out.id}: ${v === "up" ? "👍" : "👎"} on ${view.class.name}${marked}`);
  if (v === "down") {
    state.alternative = out.alternative;
    $("after-down").hidden = false;
    $("after-down-text").textContent = `👎 saved. Showing the next class, ${out.next.class_name}. ` +
      (out.alternative.setting ? `Or explain ${out.alternative.class_name} with another setting: ` +
        `${out.alternative.setting}.` : "");
    $("btn-alt").hidden = !out.alternative.setting;
    await load({ image_id: view.image_id, class: out.next.class, setting: out.next.setting });
  } else {
    $("after-down").hidden = true;
    clearMarks();
  }
}

// ---------------------------------------------------------------- region marks

function markMode() {
  return document.querySelector("input[name=markmode]:checked").value;
}

function clearMarks() {
  state.marks = { segments: new Set(), strokes: [] };
  drawMarks();
}

function imageXY(ev) {
  const [H, W] = state.view.shape;
  const c = $("marks");
  return { x: (ev.offsetX / c.clientWidth) * W, y: (ev.offsetY / c.clientHeight) * H };
}

function drawMarks() {
  const c = $("marks");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const n = state.marks.segments.size + state.marks.strokes.length;
  $("mark-count").textContent = n ? `${n} mark${n === 1 ? "" : "s"}` : "";
  if (!state.view || !n) return;
  const [H, W] = state.view.shape;
  const sx = c.width / W, sy = c.height / H;
  g.fillStyle = "rgba(0, 200, 83, 0.45)";
  const seg = state.view.explanation.segments;
  if (seg && state.marks.segments.size) {
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++)
      if (state.marks.segments.has(seg[y][x])) g.fillRect(x * sx, y * sy, sx, sy);
  }
  for (const s of state.marks.strokes) {
    g.beginPath();
    g.ellipse(s.x * sx, s.y * sy, s.r * sx, s.r * sy, 0, 0, 2 * Math.PI);
    g.fill();
  }
}

function addStroke(ev) {
  const [H, W] = state.view.shape;
  const p = imageXY(ev);
  if (p.x < 0 || p.y < 0 || p.x >= W || p.y >= H) return;
  state.marks.strokes.push({ x: +p.x.toFixed(2), y: +p.y.toFixed(2), r: Math.max(1, Math.round(Math.max(H, W) / 16)) });
  drawMarks();
}

function onMarksDown(ev) {
  if (!state.view) return;
  if (markMode() === "brush") {
    state.drawing = true;
    addStroke(ev);
  } else if (markMode() === "segments") {
    const seg = state.view.explanation.segments;
    if (!seg) {
      setStatus("this setting has no segments: mark with the brush", true);
      return;
    }
    const p = imageXY(ev);
    const id = seg[Math.min(seg.length - 1, Math.floor(p.y))][Math.min(seg[0].length - 1, Math.floor(p.x))];
    if (state.marks.segments.has(id)) state.marks.segments.delete(id);
    else state.marks.segments.add(id);
    drawMarks();
  }
}

// ---------------------------------------------------------------- side by side

function showCompare() {
  const v = state.view;
  const grid = $("compare-grid");
  grid.innerHTML = "";
  $("compare").hidden = false;
  for (const s of state.settings) {
    const f = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = s.name;
    img.dataset.setting = s.name;
    img.src = "/api/overlay.png?" + query({ image_id: v.image_id, class: v.class.index, setting: s.name, wait: 120 });
    img.onclick = () => load({ image_id: v.image_id, class: v.class.index, setting: s.name });
    const cap = document.createElement("figcaption");
    cap.textContent = `${s.method_label} · ${s.segmentation} · ${s.masker}`;
    f.appendChild(img);
    f.appendChild(cap);
    grid.appendChild(f);
  }
}

function step(d) {
  const v = state.view;
  const n = state.ids.length;
  $("after-down").hidden = true;
  load({ image_id: state.ids[(v.index + d + n) % n] });
}

function wire() {
  $("btn-up").onclick = () => verdict("up");
  $("btn-down").onclick = () => verdict("down");
  $("btn-next").onclick = () => step(1);
  $("btn-prev").onclick = () => step(-1);
  $("btn-clear").onclick = clearMarks;
  $("btn-compare").onclick = showCompare;
  $("btn-alt").onclick = () => {
    const a = state.alternative;
    $("after-down").hidden = true;
    if (a && a.setting) load({ image_id: state.view.image_id, class: a.class, setting: a.setting });
  };
  $("sel-class").onchange = (e) => load({ image_id: state.view.image_id, class: e.target.value,
                                         setting: state.view.setting.name });
  $("sel-setting").onchange = (e) => load({ image_id: state.view.image_id, class: state.view.class.index,
                                           setting: e.target.value });
  for (const r of document.querySelectorAll("input[name=markmode]"))
    r.onchange = () => $("marks").parentElement.classList.toggle("marking", markMode() !== "off");
  const c = $("marks");
  c.onmousedown = onMarksDown;
  c.onmousemove = (ev) => { if (state.drawing) addStroke(ev); };
  window.addEventListener("mouseup", () => { state.drawing = false; });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT") return;
    if (ev.key === "ArrowRight") step(1);
    else if (ev.key === "ArrowLeft") step(-1);
  });
}

init().catch((e) => setStatus(e.message, true));
