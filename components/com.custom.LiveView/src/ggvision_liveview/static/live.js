// The live view page: one Server-Sent Events stream (/events), closed while the tab is hidden so
// that the server encodes nothing for it. Text goes in with textContent only (never as HTML).
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  let source = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function num(x, digits) {
    return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
  }

  function cameraTile(name) {
    const id = "camera-" + name;
    let tile = document.getElementById(id);
    if (tile) return tile;
    tile = el("section", "camera");
    tile.id = id;
    tile.dataset.camera = name;
    const h = el("h2", null, name + " ");
    h.appendChild(el("span", "badge", "live"));
    const img = el("img");
    img.alt = "camera " + name;
    tile.append(h, img, el("p", "why"), el("ol", "labels"), el("p", "figures"));
    document.getElementById("no-cameras")?.remove();
    document.getElementById("cameras").appendChild(tile);
    return tile;
  }

  function showCamera(cam) {
    const tile = cameraTile(cam.camera);
    tile.dataset.state = cam.state;
    tile.querySelector(".badge").textContent = cam.state === "up" ? "live" : "down";
    tile.querySelector(".why").textContent = cam.state === "up" ? "" : "DOWN: " + cam.why;
    if (cam.jpeg) {
      tile.querySelector("img").src = cam.jpeg;
      tile.dataset.frameId = cam.frame_id;
    }
    const list = tile.querySelector(".labels");
    const items = (cam.detections && cam.detections.length ? cam.detections : cam.predictions)
      .map((p) => {
        const li = el("li");
        li.append(el("span", "label", p.label), " ", el("span", "score", num(p.score, 3)));
        return li;
      });
    if (cam.status === "error") items.push(el("li", "error", "error " + cam.error_code));
    list.replaceChildren(...items);
    tile.querySelector(".figures").textContent =
      num(cam.fps, 1) + " fps, " + num(cam.latency_ms, 0) + " ms (p50 " +
      num(cam.latency_p50_ms, 0) + ", p95 " + num(cam.latency_p95_ms, 0) + ")";
  }

  function showComponent(c, aside) {
    const box = el("section", "component");
    box.dataset.component = c.component;
    box.dataset.state = c.state;
    const h = el("h3", null, c.component + " ");
    h.appendChild(el("span", "badge", c.state));
    const dl = el("dl");
    const rows = [
      ["reported state", c.reported_state || "-"],
      ["fps", num(c.fps, 2)],
      ["latency p50 / p95", num(c.latency_p50_ms, 1) + " / " + num(c.latency_p95_ms, 1) + " ms"],
      ["queue depth", num(c.queue_depth, 0)],
      ["dropped", num(c.dropped, 0)],
      ["errors", Object.entries(c.errors).map(([k, v]) => k + " " + v).join(", ") || "none"],
      ["uptime", num(c.uptime_s, 0) + " s"],
      ["last status", num(c.age_s, 0) + " s ago"],
    ];
    if (c.camera) rows.unshift(["camera", c.camera]);
    if (c.model) {
      rows.push(["model", [c.model.name, c.model.version].join(" ")]);
      rows.push(["backend", [c.model.backend, c.model.precision].join(" ")]);
    }
    for (const [k, v] of rows) dl.append(el("dt", null, k), el("dd", null, v));
    box.append(h, dl);
    aside.appendChild(box);
  }

  function show(doc) {
    doc.cameras.forEach(showCamera);
    const aside = document.getElementById("components");
    aside.replaceChildren();
    doc.components.forEach((c) => showComponent(c, aside));
    const ready = document.getElementById("ready");
    ready.dataset.ready = String(doc.ready);
    ready.textContent = doc.ready ? "ready" : "not ready";
  }

  function setConnection(state) {
    const c = document.getElementById("connection");
    c.dataset.state = state;
    c.textContent = state;
  }

  function open() {
    if (source) return;
    source = new EventSource("events" + query);
    source.addEventListener("state", (e) => show(JSON.parse(e.data)));
    source.onopen = () => setConnection("open");
    source.onerror = () => setConnection(source && source.readyState === 2 ? "closed" : "connecting");
  }

  function close() {
    if (source) source.close();
    source = null;
    setConnection("paused");
  }

  document.addEventListener("visibilitychange", () => (document.hidden ? close() : open()));
  if (!document.hidden) open();
})();
