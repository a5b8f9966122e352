// tagger map: the page's script. Reads the data inlined by tagger.library.map_page, draws the
// points on a canvas with a small CPU rasteriser of our own (a filled disc per point into one
// ImageData, then a single putImageData: ~3 ms a frame at 100,000 points, the same in every
// browser with or without a GPU; benchmarks/map_speed.py, RESULTS.md), and exposes what it
// shows as window.taggerMap (read-only) for tests.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("tagger-data").textContent);
  const N = D.n;
  const $ = (id) => document.getElementById(id);

  function bytes(b64) {
    const s = atob(b64), u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return u.buffer;
  }
  const XY = new Float32Array(bytes(D.xy));
  const SCORES = new Uint8Array(bytes(D.scores));  // [T, N]
  const T = D.columns.length;
  const K = D.projection.k;
  const NEAR = new Int32Array(bytes(D.neighbours));
  const SIM = new Int8Array(bytes(D.similarity));
  const ARTIST = new Uint32Array(bytes(D.artist)), ALBUM = new Uint32Array(bytes(D.album));
  const DIR = new Uint32Array(bytes(D.dir)), FORMAT = new Uint8Array(bytes(D.format_));
  const DURATION = new Float32Array(bytes(D.durations));
  const column = (j) => SCORES.subarray(j * N, (j + 1) * N);

  // --- what a track is called, where it is -------------------------------------------------
  const dirPath = (i) => D.dirs[DIR[i]];
  const path = (i) => { const d = dirPath(i); return (d.endsWith("/") ? d : d + "/") + D.files[i]; };
  function stem(name) { const k = name.lastIndexOf("."); return k > 0 ? name.slice(0, k) : name; }
  function label(i) {  // "Artist – Title", as players show it; the file name where there is neither
    const parts = [D.artists[ARTIST[i]], D.titles[i]].filter((v) => v);
    return parts.length ? parts.join(" – ") : D.files[i];
  }
  function m3uName(i) {
    const parts = [D.artists[ARTIST[i]], D.titles[i]].filter((v) => v);
    return (parts.length ? parts.join(" - ") : stem(D.files[i])).replace(/[\r\n]/g, " ");
  }
  function fileUrl(i) {
    let name;
    try { name = encodeURIComponent(D.files[i]); } catch (e) { name = escape(D.files[i]); }
    return D.dirUrls[DIR[i]] + name;
  }

  // --- colours -----------------------------------------------------------------------------
  const NONE = [200, 200, 200];
  const CATEGORICAL = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5",
    "#dbdb8d", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"].map(hexRgb);
  // viridis, low → high, interpolated into a 256-entry table
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
    "#b5de2b", "#fde725"].map(hexRgb);
  const SCALE = [];
  for (let v = 0; v < 256; v++) {
    const t = v / 255 * (VIRIDIS.length - 1), a = Math.floor(t), b = Math.min(a + 1, VIRIDIS.length - 1), f = t - a;
    SCALE.push(VIRIDIS[a].map((c, k) => Math.round(c + (VIRIDIS[b][k] - c) * f)));
  }
  function hexRgb(h) { return [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16)); }
  function rgbHex(c) { return "#" + c.map((v) => v.toString(16).padStart(2, "0")).join(""); }
  function pack(c) { return (255 << 24 | c[2] << 16 | c[1] << 8 | c[0]) >>> 0; }  // ImageData is RGBA bytes

  // a colour key's score per track: a tag's column, a group's or a genre's members' maximum
  const groupsByKey = Object.fromEntries(D.groups.map((g) => [g.key, g]));
  const columnByKey = Object.fromEntries(D.columns.map((c, j) => [c.key, j]));
  function maxOf(members) {
    if (members.length === 1) return column(members[0]);
    const out = new Uint8Array(N);
    for (const j of members) { const c = column(j); for (let i = 0; i < N; i++) if (c[i] > out[i]) out[i] = c[i]; }
    return out;
  }
  function scoreOf(key) {
    if (key in columnByKey) return column(columnByKey[key]);
    if (key in groupsByKey) return maxOf(groupsByKey[key].members);
    return null;
  }
  function keyLabel(key) {
    if (key === "genre") return "top genre"; if (key === "mood") return "top mood";
    if (key in columnByKey) return D.columns[columnByKey[key]].label;
    if (key in groupsByKey) return groupsByKey[key].label;
    return key;
  }

  const COLOR = new Uint32Array(N);   // packed, per track
  const CONF = new Uint8Array(N);     // confidence 0..255: the point's size
  let colorKey = D.color, legend = null, threshold = D.threshold;

  function topCategory(cats) {  // per track: index of its best category at ≥ threshold, else -1
    const best = new Int16Array(N).fill(-1), p = new Uint8Array(N);
    cats.forEach((cat, c) => {
      const s = maxOf(cat.members);
      for (let i = 0; i < N; i++) if (s[i] > p[i]) { p[i] = s[i]; best[i] = c; }
    });
    const cut = Math.round(threshold * 255);
    for (let i = 0; i < N; i++) if (p[i] < cut) best[i] = -1;
    return { best, p };
  }
  function recolor() {
    if (colorKey === "genre" || colorKey === "mood") {
      const cats = colorKey === "genre" ? D.genres : D.moods;
      const { best, p } = topCategory(cats);
      const counts = new Array(cats.length).fill(0); let none = 0;
      const packed = cats.map((_, c) => pack(CATEGORICAL[c % CATEGORICAL.length]));
      const packedNone = pack(NONE);
      for (let i = 0; i < N; i++) {
        const c = best[i];
        if (c < 0) { COLOR[i] = packedNone; none++; } else { COLOR[i] = packed[c]; counts[c]++; }
        CONF[i] = p[i];
      }
      legend = { kind: "categories", title: keyLabel(colorKey),
        entries: cats.map((cat, c) => ({ label: cat.label, color: rgbHex(CATEGORICAL[c % CATEGORICAL.length]), count: counts[c] }))
          .concat([{ label: `none at ≥ ${threshold.toFixed(2)}`, color: rgbHex(NONE), count: none }]) };
    } else {
      const s = scoreOf(colorKey);
      const packed = SCALE.map(pack);
      for (let i = 0; i < N; i++) { COLOR[i] = packed[s[i]]; CONF[i] = s[i]; }
      legend = { kind: "scale", title: keyLabel(colorKey), low: rgbHex(SCALE[0]), high: rgbHex(SCALE[255]),
        stops: VIRIDIS.map(rgbHex) };
    }
    order = drawOrder();
    showLegend();
    draw();
  }

  // --- which tracks are drawn: search and tag filters ----------------------------------------
  const SHOWN = new Uint8Array(N).fill(1);
  let shownCount = N, searchText = "", filters = [], haystack = null;
  function refilter() {
    const words = searchText.toLowerCase().split(/\s+/).filter((w) => w);
    if (words.length && !haystack) {
      haystack = new Array(N);
      for (let i = 0; i < N; i++)
        haystack[i] = [D.titles[i] || "", D.artists[ARTIST[i]], D.albums[ALBUM[i]], path(i)].join("\n").toLowerCase();
    }
    const cols = filters.map((f) => [scoreOf(f.key), Math.round(f.min * 255)]);
    shownCount = 0;
    for (let i = 0; i < N; i++) {
      let ok = 1;
      for (const w of words) if (haystack[i].indexOf(w) < 0) { ok = 0; break; }
      if (ok) for (const [s, cut] of cols) if (s[i] < cut) { ok = 0; break; }
      SHOWN[i] = ok; shownCount += ok;
    }
    draw();
  }
  let order = null;  // draw order: least confident first, so confident points end on top
  function drawOrder() {
    const idx = new Uint32Array(N);
    for (let i = 0; i < N; i++) idx[i] = i;
    return idx.sort((a, b) => CONF[a] - CONF[b] || a - b);
  }

  // --- view: data [-1, 1] ↔ canvas pixels -----------------------------------------------------
  const stage = $("stage"), canvas = $("points"), over = $("overlay");
  const ctx = canvas.getContext("2d"), octx = over.getContext("2d");
  let W = 0, H = 0, dpr = 1, image = null, pixels = null;
  const view = { cx: 0, cy: 0, zoom: 1 };
  const unit = () => Math.min(W, H) / 2 * 0.92;  // pixels per data unit at zoom 1
  const toX = (x) => (x - view.cx) * unit() * view.zoom + W / 2;
  const toY = (y) => H / 2 - (y - view.cy) * unit() * view.zoom;
  const fromX = (px) => (px - W / 2) / (unit() * view.zoom) + view.cx;
  const fromY = (py) => (H / 2 - py) / (unit() * view.zoom) + view.cy;
  function resize() {
    dpr = window.devicePixelRatio || 1;
    const r = stage.getBoundingClientRect();
    W = Math.max(1, Math.round(r.width * dpr)); H = Math.max(1, Math.round(r.height * dpr));
    for (const c of [canvas, over]) { c.width = W; c.height = H; }
    image = ctx.createImageData(W, H); pixels = new Uint32Array(image.data.buffer);
    draw();
  }

  // disc stamps: pixel offsets (dx, dy) of a filled disc of radius r
  const STAMPS = [];
  for (let r = 0; r <= 12; r++) {
    const s = [];
    for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) if (dx * dx + dy * dy <= r * r + r) s.push(dx, dy);
    STAMPS.push(s);
  }
  const radiusOf = (conf) => {  // grows a little with zoom, more with confidence
    const base = dpr * Math.min(4, 1 + Math.log2(view.zoom) * 0.5 + (N < 2000 ? 2.5 : N < 20000 ? 1 : 0));
    return Math.max(1, Math.min(12, Math.round(base * (0.6 + 1.2 * conf / 255))));
  };

  let inView = 0, frameMs = 0, frames = 0, pending = false, selectedTrack = -1;
  const SELECTED = new Uint8Array(N);
  let selectionCount = 0;
  function draw() { if (!pending) { pending = true; requestAnimationFrame(render); } }
  function render() {
    pending = false;
    if (!pixels || !order) return;
    const t0 = performance.now();
    pixels.fill(0xffffffff);
    const s = unit() * view.zoom, ox = W / 2 - view.cx * s, oy = H / 2 + view.cy * s;
    const radii = new Uint8Array(256);
    for (let c = 0; c < 256; c++) radii[c] = radiusOf(c);
    const offsets = STAMPS.map((st) => { const o = new Int32Array(st.length / 2); for (let k = 0; k < o.length; k++) o[k] = st[2 * k + 1] * W + st[2 * k]; return o; });
    let seen = 0;
    const stampAt = (x, y, r, colour) => {
      if (x - r >= 0 && y - r >= 0 && x + r < W && y + r < H) {
        const base = y * W + x, o = offsets[r];
        for (let k = 0; k < o.length; k++) pixels[base + o[k]] = colour;
      } else {
        const st = STAMPS[r];
        for (let k = 0; k < st.length; k += 2) {
          const px = x + st[k], py = y + st[k + 1];
          if (px >= 0 && py >= 0 && px < W && py < H) pixels[py * W + px] = colour;
        }
      }
    };
    const DARK = pack([20, 20, 20]);
    for (let k = 0; k < N; k++) {
      const i = order[k];
      if (!SHOWN[i]) continue;
      const x = Math.round(XY[2 * i] * s + ox), y = Math.round(oy - XY[2 * i + 1] * s);
      const r = radii[CONF[i]];
      if (x < -r || y < -r || x >= W + r || y >= H + r) continue;
      seen++;
      if (SELECTED[i]) stampAt(x, y, Math.min(12, r + Math.max(1, Math.round(dpr))), DARK);
      stampAt(x, y, r, COLOR[i]);
    }
    ctx.putImageData(image, 0, 0);
    inView = seen;
    drawOverlay();
    frameMs = performance.now() - t0;
    frames++;
    $("status").textContent = `${shownCount.toLocaleString()} of ${N.toLocaleString()} tracks shown` +
      (selectionCount ? ` · ${selectionCount.toLocaleString()} selected` : "");
  }

  // overlay: the selected track, lines to its nearest tracks, labels where they fit, a lasso
  let shape = null;  // {kind: 'box'|'lasso', points: [[x, y] canvas px]}
  function drawOverlay() {
    octx.clearRect(0, 0, W, H);
    if (selectedTrack >= 0) {
      const i = selectedTrack, x = toX(XY[2 * i]), y = toY(XY[2 * i + 1]);
      octx.strokeStyle = "rgba(0,0,0,.55)"; octx.lineWidth = dpr;
      for (let k = 0; k < K; k++) {
        const j = NEAR[i * K + k];
        if (j < 0) continue;
        octx.beginPath(); octx.moveTo(x, y); octx.lineTo(toX(XY[2 * j]), toY(XY[2 * j + 1])); octx.stroke();
      }
      octx.lineWidth = 2 * dpr; octx.strokeStyle = "#000";
      octx.beginPath(); octx.arc(x, y, 8 * dpr, 0, 2 * Math.PI); octx.stroke();
    }
    drawLabels();
    drawAxes();
    if (shape && shape.points.length) {
      octx.strokeStyle = "#1565c0"; octx.fillStyle = "rgba(21,101,192,.08)"; octx.lineWidth = dpr;
      octx.beginPath();
      const p = shape.kind === "box" ? boxCorners(shape.points) : shape.points;
      p.forEach(([x, y], k) => (k ? octx.lineTo(x, y) : octx.moveTo(x, y)));
      octx.closePath(); octx.fill(); octx.stroke();
    }
  }
  function drawLabels() {  // names beside points, only when few are in view and only where they fit
    if (inView > 400) return;
    octx.font = `${11 * dpr}px system-ui, sans-serif`; octx.fillStyle = "#333";
    const taken = [], h = 13 * dpr;
    for (let k = N - 1; k >= 0; k--) {
      const i = order[k];
      if (!SHOWN[i]) continue;
      const x = toX(XY[2 * i]) + 6 * dpr, y = toY(XY[2 * i + 1]) + 4 * dpr;
      if (x < 0 || y < 0 || x > W || y > H) continue;
      const text = label(i), w = octx.measureText(text).width;
      if (taken.some((b) => x < b[2] && x + w > b[0] && y - h < b[3] && y > b[1])) continue;
      taken.push([x, y - h, x + w, y]);
      octx.fillText(text, x, y);
    }
  }
  function drawAxes() {  // at the edges: the tags that rise towards them (the page's own reading of the axes)
    const axes = D.projection.axes || [], m = 6 * dpr;
    octx.font = `${11 * dpr}px system-ui, sans-serif`; octx.fillStyle = "#666";
    octx.strokeStyle = "rgba(255,255,255,.9)"; octx.lineWidth = 4 * dpr; octx.lineJoin = "round";
    const say = (text, x, y, align) => { octx.textAlign = align; octx.strokeText(text, x, y); octx.fillText(text, x, y); };
    const a = axes[0] || { low: [], high: [] }, b = axes[1] || { low: [], high: [] };
    if (a.low.length) say("← " + a.low.join(" · "), m, H / 2, "left");
    if (a.high.length) say(a.high.join(" · ") + " →", W - m, H / 2, "right");
    if (b.high.length) say("↑ " + b.high.join(" · "), W / 2, 14 * dpr, "center");
    if (b.low.length) say("↓ " + b.low.join(" · "), W / 2, H - 20 * dpr, "center");
    octx.textAlign = "left";
  }
  const boxCorners = ([[x0, y0], [x1, y1]]) => [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];

  // --- finding the point under the mouse ---------------------------------------------------
  function nearestPoint(cx, cy, maxPx) {  // canvas px → the nearest shown point within maxPx, or -1
    const s = unit() * view.zoom, ox = W / 2 - view.cx * s, oy = H / 2 + view.cy * s;
    let best = -1, bestD = maxPx * maxPx;
    for (let i = 0; i < N; i++) {
      if (!SHOWN[i]) continue;
      const dx = XY[2 * i] * s + ox - cx, dy = oy - XY[2 * i + 1] * s - cy, d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  }

  // --- a track's best tags (groups collapse their members, as tagger write does) --------------
  const grouped = new Set(D.groups.flatMap((g) => g.members));
  function topTags(i, n) {
    const cands = D.groups.map((g) => [g.label, Math.max(...g.members.map((j) => column(j)[i]))]);
    D.columns.forEach((c, j) => { if (!grouped.has(j)) cands.push([c.label, column(j)[i]]); });
    return cands.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n).map(([l, p]) => [l, p / 255]);
  }

  // --- the side panel ----------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (k === "class") e.className = v; else e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }
  function showLegend() {
    const box = $("legend"); box.replaceChildren();
    box.append(el("div", { class: "dim" }, `${legend.title}; size: how sure the model is`));
    if (legend.kind === "scale") {
      box.append(el("div", { class: "gradient", style: `background: linear-gradient(to right, ${legend.stops.join(",")})` }));
      box.append(el("div", { class: "legend-row" }, el("span", {}, "0"), el("span", {}, "probability"), el("span", {}, "1")));
    } else {
      for (const e of legend.entries) {
        if (!e.count) continue;
        box.append(el("div", { class: "legend-row" },
          el("span", {}, el("span", { class: "swatch", style: `background:${e.color}` }), e.label),
          el("span", { class: "dim" }, e.count.toLocaleString())));
      }
    }
  }
  function select(i) {
    selectedTrack = i;
    const box = $("track"); box.replaceChildren();
    if (i < 0) { draw(); return; }
    const meta = [D.albums[ALBUM[i]], D.formats[FORMAT[i]], fmtTime(DURATION[i])].filter((v) => v).join(" · ");
    box.append(el("div", { class: "track-title" }, el("strong", {}, label(i))));
    box.append(el("div", { class: "dim" }, meta));
    box.append(el("div", { class: "dim path" }, path(i)));
    box.append(el("audio", { controls: "", preload: "none", src: fileUrl(i) }));
    const tags = el("div", { class: "tags" });
    for (const [name, p] of topTags(i, 8))
      tags.append(el("div", { class: "tagrow" }, el("span", {}, name),
        el("span", {}, el("span", { class: "bar", style: `width:${Math.round(p * 100)}%` })), el("span", {}, p.toFixed(2))));
    box.append(tags);
    box.append(el("div", { class: "dim" }, "Sounds most like (from the full embeddings; the lines on the map):"));
    const list = el("ol", { class: "near" });
    for (let k = 0; k < K; k++) {
      const j = NEAR[i * K + k];
      if (j < 0) continue;
      const a = el("a", { "data-index": j }, label(j));
      a.addEventListener("click", () => select(j));
      list.append(el("li", {}, a, el("span", { class: "dim" }, ` ${(SIM[i * K + k] / 127).toFixed(2)}`)));
    }
    box.append(list);
    draw();
  }
  const fmtTime = (s) => (s > 0 ? `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}` : "");

  function colorOptions() {
    const sel = $("color");
    const group = (name, items) => {
      if (!items.length) return;
      const g = el("optgroup", { label: name });
      for (const [key, text] of items) g.append(el("option", { value: key }, text));
      sel.append(g);
    };
    group("Top", [...(D.genres.length ? [["genre", "top genre"]] : []), ...(D.moods.length ? [["mood", "top mood"]] : [])]);
    group("Learned tags", D.columns.filter((c) => c.kind === "learned").map((c) => [c.key, c.label]));
    group("Groups", D.groups.map((g) => [g.key, g.label]));
    group("Tags", D.columns.filter((c) => c.kind === "tag").map((c) => [c.key, c.label]));
    sel.value = colorKey;
    sel.addEventListener("change", () => { colorKey = sel.value; recolor(); });
  }
  function tagOptions(select) {
    for (const g of D.groups) select.append(el("option", { value: g.key }, g.label));
    for (const c of D.columns) select.append(el("option", { value: c.key }, c.label + (c.kind === "learned" ? " (learned)" : "")));
  }
  $("add-filter").addEventListener("click", () => {
    const f = { key: D.groups.length ? D.groups[0].key : D.columns[0].key, min: 0.5 };
    filters.push(f);
    const s = el("select", { "aria-label": "filter tag" }); tagOptions(s); s.value = f.key;
    const r = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: "0.5", "aria-label": "at least" });
    const out = el("output", {}, "0.50"), x = el("button", { title: "remove" }, "×");
    const row = el("div", { class: "filter" }, s, r, out, x);
    s.addEventListener("change", () => { f.key = s.value; refilter(); });
    r.addEventListener("input", () => { f.min = +r.value; out.textContent = f.min.toFixed(2); refilter(); });
    x.addEventListener("click", () => { filters = filters.filter((g) => g !== f); row.remove(); refilter(); });
    $("filters").append(row);
    refilter();
  });

  function axesText() {
    const a = D.projection.axes || [], parts = [];
    if (a[0] && (a[0].low.length || a[0].high.length))
      parts.push(`across, ${a[0].low.join(", ") || "—"} (←) give way to ${a[0].high.join(", ") || "—"} (→)`);
    if (a[1] && (a[1].low.length || a[1].high.length))
      parts.push(`up, ${a[1].low.join(", ") || "—"} (↓) to ${a[1].high.join(", ") || "—"} (↑)`);
    return parts.length ? ` beyond what the tags say: in this library, ${parts.join("; ")}` : "";
  }
  function aboutText() {
    const p = D.projection, box = $("about-text");
    const how = p.name === "pca"
      ? `Each point is a track. Its place comes from the model's embedding of its sound (${D.model}), ` +
        `squeezed from many dimensions into two: across (→) is the direction in which this library's tracks differ most, ` +
        `up (↑) the next one${p.explained.length ? ` (together ${Math.round(100 * (p.explained[0] + p.explained[1]))} % of all the variation)` : ""}. ` +
        `The axes have no units and no fixed meaning` + axesText() + `: colour by a tag to see what changes along them.`
      : `Each point is a track, placed by t-SNE from the model's embedding of its sound (${D.model}): ` +
        `tracks that sound alike are pulled together; distances between far-apart groups mean little.`;
    box.append(el("p", {}, how));
    box.append(el("p", {}, "Nearby points sound alike only approximately" +
      (p.kept != null ? `: of a track's ${p.k} most similar tracks, on average ${Math.round(p.kept * 100)} % are among its ${p.k} nearest points here. ` : ". ") +
      "The list under a clicked track (and its lines on the map) comes from the full embeddings, as tagger similar ranks them."));
    box.append(el("p", { class: "dim" }, "Drag to pan, wheel to zoom; box or lasso selects (shift-drag: box), then save the selection as an m3u playlist. " +
      `Made ${D.created} by tagger map.`));
  }

  // --- the library in figures (SVG) --------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }
  function bars(title, rows, color) {  // rows: [label, value]; horizontal bars
    const h = 15, w = 400, lw = 130, max = Math.max(1, ...rows.map((r) => r[1]));
    const s = svg("svg", { width: w, height: rows.length * h + 4, role: "img", "aria-label": title });
    rows.forEach(([name, v], k) => {
      const bw = (w - lw - 60) * v / max;
      s.append(svg("text", { x: lw - 4, y: k * h + 11, "text-anchor": "end" }, String(name)));
      s.append(svg("rect", { x: lw, y: k * h + 2, width: Math.max(bw, v ? 1 : 0), height: h - 4, fill: color || "#1565c0" },
        svg("title", {}, `${name}: ${v.toLocaleString()}`)));
      s.append(svg("text", { x: lw + bw + 4, y: k * h + 11 }, v.toLocaleString()));
    });
    return el("figure", {}, el("figcaption", {}, title), s);
  }
  function histogram(title, counts, lo, hi, unitLabel) {
    const w = 400, h = 120, bw = (w - 40) / counts.length, max = Math.max(1, ...counts);
    const s = svg("svg", { width: w, height: h + 30, role: "img", "aria-label": title });
    counts.forEach((c, k) => s.append(svg("rect", { x: 30 + k * bw, y: h - h * c / max, width: Math.max(1, bw - 1), height: h * c / max, fill: "#1565c0" },
      svg("title", {}, `${c.toLocaleString()}`))));
    s.append(svg("text", { x: 30, y: h + 14 }, `${lo}`));
    s.append(svg("text", { x: w - 10, y: h + 14, "text-anchor": "end" }, `${hi} ${unitLabel}`));
    s.append(svg("text", { x: 26, y: 10, "text-anchor": "end" }, max.toLocaleString()));
    return el("figure", {}, el("figcaption", {}, title), s);
  }
  function multiples() {  // each tag's probability distribution, 20 bins, log heights
    const box = el("div", { class: "multiples" });
    D.columns.forEach((c, j) => {
      const counts = new Array(20).fill(0), col = column(j);
      for (let i = 0; i < N; i++) counts[Math.min(19, col[i] * 20 >> 8)]++;
      const max = Math.log1p(Math.max(...counts));
      const s = svg("svg", { width: 80, height: 30, role: "img", "aria-label": c.label });
      counts.forEach((n, k) => { const hh = 28 * Math.log1p(n) / max; s.append(svg("rect", { x: k * 4, y: 29 - hh, width: 3, height: hh, fill: k / 20 >= threshold ? "#1565c0" : "#9ab" })); });
      box.append(el("div", {}, s, el("br"), c.label));
    });
    return el("figure", {}, el("figcaption", {}, "How sure the model is, tag by tag (probability 0 → 1, log counts; blue: counts as tagged)"), box);
  }
  function figures() {
    const charts = $("charts"); charts.replaceChildren();
    const cut = Math.round(threshold * 255);
    const counts = D.columns.map((c, j) => { let n = 0; const col = column(j); for (let i = 0; i < N; i++) n += col[i] >= cut; return [c.label, n]; });
    charts.append(bars(`Tracks with each tag at ≥ ${threshold.toFixed(2)}`, counts.sort((a, b) => b[1] - a[1])));
    for (const [name, cats] of [["genre", D.genres], ["mood", D.moods]]) {
      if (!cats.length) continue;
      const { best } = topCategory(cats), n = new Array(cats.length + 1).fill(0);
      for (let i = 0; i < N; i++) n[best[i] < 0 ? cats.length : best[i]]++;
      charts.append(bars(`Top ${name} (at ≥ ${threshold.toFixed(2)})`, cats.map((c, k) => [c.label, n[k]]).concat([["none", n[cats.length]]])));
    }
    charts.append(multiples());
    const fmts = new Array(D.formats.length).fill(0);
    for (let i = 0; i < N; i++) fmts[FORMAT[i]]++;
    charts.append(bars("Formats", D.formats.map((f, k) => [f || "unknown", fmts[k]]).filter((r) => r[1]).sort((a, b) => b[1] - a[1])));
    let longest = 0;
    for (let i = 0; i < N; i++) longest = Math.max(longest, DURATION[i]);
    const top = Math.max(1, Math.ceil(Math.min(longest, 1200) / 60)), dur = new Array(Math.min(40, top * 2)).fill(0);
    for (let i = 0; i < N; i++) dur[Math.min(dur.length - 1, Math.floor(DURATION[i] / 60 / top * dur.length))]++;
    charts.append(histogram("Durations", dur, "0", top + (longest > 1200 ? "+" : ""), "min"));
    const L = D.library;
    charts.append(bars("The library's files", [["mapped", N], ["left out by --where", L.filtered_out],
      ["other models", L.other_models], ["failed to decode", L.failed], ["missing", L.missing]], "#555"));
    if (L.failures.length) {
      const reasons = {};
      for (const [, why] of L.failures) { const r = why.split(":")[0].slice(0, 40); reasons[r] = (reasons[r] || 0) + 1; }
      const fig = bars(`Why files failed (the first ${L.failures.length} of ${L.failed})`, Object.entries(reasons).sort((a, b) => b[1] - a[1]), "#b71c1c");
      const det = el("details", {}, el("summary", {}, "which files"));
      for (const [p, why] of L.failures) det.append(el("div", { class: "dim" }, `${p}: ${why}`));
      fig.append(det);
      charts.append(fig);
    }
  }

  // --- mouse: pan, zoom, hover, click, box and lasso ------------------------------------------
  const tooltip = $("tooltip");
  let drag = null, mode = "pan";
  const canvasXY = (e) => { const r = over.getBoundingClientRect(); return [(e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr]; };
  for (const r of document.querySelectorAll("input[name=mode]"))
    r.addEventListener("change", () => { mode = r.value; over.classList.toggle("select", mode !== "pan"); });
  over.addEventListener("pointerdown", (e) => {
    const [x, y] = canvasXY(e);
    const kind = e.shiftKey ? "box" : mode;
    drag = { x, y, kind, moved: false, cx: view.cx, cy: view.cy };
    if (kind !== "pan") shape = { kind, points: kind === "box" ? [[x, y], [x, y]] : [[x, y]] };
    over.setPointerCapture(e.pointerId);
  });
  over.addEventListener("pointermove", (e) => {
    const [x, y] = canvasXY(e);
    if (!drag) return hover(x, y, e);
    if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 3 * dpr) drag.moved = true;
    if (drag.kind === "pan") {
      view.cx = drag.cx - (x - drag.x) / (unit() * view.zoom); view.cy = drag.cy + (y - drag.y) / (unit() * view.zoom);
      draw();
    } else {
      if (drag.kind === "box") shape.points[1] = [x, y]; else shape.points.push([x, y]);
      drawOverlay();
    }
  });
  over.addEventListener("pointerup", (e) => {
    const [x, y] = canvasXY(e);
    const d = drag; drag = null;
    if (!d) return;
    if (!d.moved) { shape = null; const i = nearestPoint(x, y, 8 * dpr); if (i >= 0) select(i); else drawOverlay(); return; }
    if (d.kind !== "pan") { selectShape(shape); shape = null; draw(); }
  });
  over.addEventListener("pointerleave", () => { tooltip.hidden = true; });
  over.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = canvasXY(e);
    const before = [fromX(x), fromY(y)];
    view.zoom = Math.min(2000, Math.max(0.5, view.zoom * Math.exp(-e.deltaY * 0.002)));
    view.cx += before[0] - fromX(x); view.cy += before[1] - fromY(y);
    draw();
  }, { passive: false });
  function hover(x, y, e) {
    const i = nearestPoint(x, y, 8 * dpr);
    if (i < 0) { tooltip.hidden = true; return; }
    tooltip.replaceChildren(el("div", {}, label(i)),
      el("div", { class: "tags" }, topTags(i, 3).map(([n, p]) => `${n} ${p.toFixed(2)}`).join(" · ")));
    const r = stage.getBoundingClientRect();
    tooltip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 200)}px`;
    tooltip.style.top = `${e.clientY - r.top + 12}px`;
    tooltip.hidden = false;
  }
  function inside(poly, x, y) {
    let c = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > y) !== (yb > y) && x < (xb - xa) * (y - ya) / (yb - ya) + xa) c = !c;
    }
    return c;
  }
  function selectShape(sh) {
    SELECTED.fill(0); selectionCount = 0;
    const pts = sh.kind === "box" ? boxCorners(sh.points) : sh.points;
    if (pts.length < 3) return updateSelection();
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    for (let i = 0; i < N; i++) {
      if (!SHOWN[i]) continue;
      const x = toX(XY[2 * i]), y = toY(XY[2 * i + 1]);
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;
      if (sh.kind === "box" || inside(pts, x, y)) { SELECTED[i] = 1; selectionCount++; }
    }
    updateSelection();
  }
  function updateSelection() {
    $("save").disabled = $("clear").disabled = !selectionCount;
    $("save").textContent = `save selection as m3u (${selectionCount.toLocaleString()})`;
    draw();
  }
  const selectionList = () => { const out = []; for (let i = 0; i < N; i++) if (SELECTED[i]) out.push(i); return out; };
  $("clear").addEventListener("click", () => { SELECTED.fill(0); selectionCount = 0; updateSelection(); });
  $("save").addEventListener("click", () => {
    const lines = ["#EXTM3U"];
    for (const i of selectionList()) {
      if (/[\r\n]/.test(path(i))) continue;  // a line break would make it two entries
      lines.push(`#EXTINF:${DURATION[i] > 0 ? Math.round(DURATION[i]) : -1},${m3uName(i)}`, path(i));
    }
    const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "audio/x-mpegurl" }));
    const a = el("a", { href: url, download: "tagger-selection.m3u" });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
  let searchTimer = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { searchText = e.target.value; refilter(); }, 120);
  });
  $("reset").addEventListener("click", () => { Object.assign(view, { cx: 0, cy: 0, zoom: 1 }); draw(); });
  const thr = $("threshold");
  thr.value = threshold; $("thr-out").textContent = threshold.toFixed(2);
  thr.addEventListener("change", () => { threshold = +thr.value; $("thr-out").textContent = threshold.toFixed(2); figures(); recolor(); });

  // --- start ---------------------------------------------------------------------------------
  $("summary").textContent = `${N.toLocaleString()} tracks · ${D.model} · ${D.created}`;
  document.title = `tagger map · ${N.toLocaleString()} tracks`;
  colorOptions();
  aboutText();
  new ResizeObserver(resize).observe(stage);
  recolor();
  resize();
  setTimeout(figures, 0);  // after the first frame

  // what the page shows, for tests and the curious: read-only
  window.taggerMap = Object.freeze({
    get ready() { return frames > 0; },       // the first frame is drawn
    get total() { return N; },
    get drawn() { return shownCount; },       // tracks drawn (those that pass search and filters)
    get inView() { return inView; },          // of those, in the visible part of the map
    get colorBy() { return colorKey; },
    get legend() { return JSON.parse(JSON.stringify(legend)); },
    get frameMs() { return frameMs; },
    get selected() {
      if (selectedTrack < 0) return null;
      const i = selectedTrack;
      return { index: i, path: path(i), label: label(i), title: D.titles[i], topTags: topTags(i, 3), url: fileUrl(i),
        neighbours: Array.from({ length: K }, (_, k) => NEAR[i * K + k]).filter((j) => j >= 0).map((j) => path(j)) };
    },
    get selection() { return selectionList().map(path); },
    indexOf(p) { for (let i = 0; i < N; i++) if (path(i) === p) return i; return -1; },
    position(i) { return [XY[2 * i], XY[2 * i + 1]]; },
    score(key, i) { const s = scoreOf(key); return s ? s[i] / 255 : null; },
    colorOf(i) { const c = COLOR[i]; return rgbHex([c & 255, c >> 8 & 255, c >> 16 & 255]); },
    screenPosition(i) { const r = over.getBoundingClientRect(); return { x: r.left + toX(XY[2 * i]) / dpr, y: r.top + toY(XY[2 * i + 1]) / dpr }; },
  });
})();
