// The studio page: plain DOM over the HTTP API (see /openapi.json). No build step.

const $ = (id) => document.getElementById(id);
const state = { project: null, options: null, job: null, events: null, dragging: null };

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response.status === 204 ? null : response.json();
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

async function guarded(work) {
  try {
    showError(null);
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

// ------------------------------------------------------------------ projects

async function loadProjects(select) {
  const projects = await api("GET", "/api/projects");
  const list = $("project-select");
  list.replaceChildren(...(projects.length ? [] : [new Option("(none yet)", "")]),
    ...projects.map((p) => new Option(p.name, p.id)));
  const wanted = select || new URLSearchParams(location.hash.slice(1)).get("project") ||
    (projects.length ? projects[projects.length - 1].id : "");
  if (wanted) {
    list.value = wanted;
    await openProject(wanted);
  }
}

async function openProject(id) {
  location.hash = `project=${id}`;
  forgetJob();  // what the last project's job showed is not this project's
  $("inbetweens").replaceChildren();
  state.project = await api("GET", `/api/projects/${id}`);
  $("workspace").hidden = false;
  renderKeyframes();
  fillSettings();
  await refreshFrames();
  showVideo();
  if (state.project.job) follow(state.project.job);
}

async function reloadProject() {
  state.project = await api("GET", `/api/projects/${state.project.id}`);
  renderKeyframes();
  await refreshFrames();
}

// ----------------------------------------------------------------- keyframes

function renderKeyframes() {
  const list = $("timeline");
  const frames = state.project.keyframes;
  list.replaceChildren(...frames.map((kf, i) => keyframeCard(kf, i)));
  for (const id of ["interp-a", "interp-b"]) {
    const select = $(id);
    const previous = select.value;
    select.replaceChildren(...frames.map((kf, i) => new Option(`${i + 1}: ${label(kf)}`, kf.id)));
    if (frames.some((kf) => kf.id === previous)) select.value = previous;
  }
  if (frames.length > 1 && $("interp-a").value === $("interp-b").value) $("interp-b").selectedIndex = 1;
}

function label(kf) {
  return kf.kind === "prompt" ? kf.prompt : kf.name || "image";
}

function keyframeCard(kf, index) {
  const card = document.createElement("li");
  card.className = "keyframe";
  card.draggable = true;
  card.dataset.id = kf.id;
  card.dataset.index = index;
  const img = document.createElement("img");
  img.src = `${kf.image_url}?v=${kf.sha256.slice(0, 12)}`;
  img.alt = label(kf);
  const caption = document.createElement("p");
  const seconds = kf.position.seconds === null ? "" : ` · ${kf.position.seconds.toFixed(2)} s`;
  caption.textContent = `${index + 1}. ${label(kf)}${seconds}`;
  const replace = document.createElement("label");
  replace.className = "button small";
  replace.textContent = "replace";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "image/*";
  input.hidden = true;
  input.className = "replace-input";
  input.addEventListener("change", () => guarded(async () => {
    if (!input.files.length) return;
    const form = new FormData();
    form.append("file", input.files[0]);
    await api("PATCH", `/api/projects/${state.project.id}/keyframes/${kf.id}`, form);
    await reloadProject();
  }));
  replace.append(input);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "small delete";
  remove.textContent = "delete";
  remove.addEventListener("click", () => guarded(async () => {
    await api("DELETE", `/api/projects/${state.project.id}/keyframes/${kf.id}`);
    await reloadProject();
  }));
  card.append(img, caption, replace, remove);
  card.addEventListener("dragstart", (event) => {
    state.dragging = kf.id;
    event.dataTransfer.setData("text/plain", kf.id);
    card.classList.add("dragging");
  });
  card.addEventListener("dragend", () => card.classList.remove("dragging"));
  card.addEventListener("dragover", (event) => event.preventDefault());
  card.addEventListener("drop", (event) => {
    event.preventDefault();
    const moved = event.dataTransfer.getData("text/plain") || state.dragging;
    if (!moved || moved === kf.id) return;
    guarded(async () => {
      await api("PATCH", `/api/projects/${state.project.id}/keyframes/${moved}`, { index });
      await reloadProject();
    });
  });
  return card;
}

async function addFiles(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    await api("POST", `/api/projects/${state.project.id}/keyframes`, form);
  }
  await reloadProject();
}

// ------------------------------------------------------------------ frames

async function refreshFrames() {
  const frames = await api("GET", `/api/projects/${state.project.id}/frames`);
  const strip = $("frames");
  strip.replaceChildren(...frames.units.map((unit) => {
    const bar = document.createElement("div");
    bar.className = `unit state-${unit.state}`;
    bar.dataset.state = unit.state;
    bar.dataset.kind = unit.kind;
    bar.dataset.keyframes = unit.keyframes.join(",");
    bar.style.flexGrow = unit.frames;
    bar.title = `${unit.kind} ${unit.keyframes.map((k) => k + 1).join("→")}: frames ${unit.start}–` +
      `${unit.start + unit.frames - 1}, ${unit.state}`;
    return bar;
  }));
  strip.dataset.frames = frames.frames;
  return frames;
}

// ---------------------------------------------------------------- settings

function fillSettings() {
  const options = state.options;
  const settings = state.project.settings;
  const defaults = options.defaults;
  for (const key of ["S", "I", "F", "fps", "w", "h", "target", "steps", "seed"]) {
    const input = $(`set-${key}`);
    input.value = settings[key] ?? "";
    input.placeholder = defaults[key] ?? input.placeholder;
  }
  fillSelect($("set-easing"), options.easings, settings.easing ?? defaults.easing);
  fillSelect($("set-format"), options.formats, settings.format ?? defaults.format);
  for (const stage of ["keyframes", "motion", "upscale"]) {
    const chosen = (settings.engines || {})[stage];
    fillSelect($(`engine-${stage}`), ["", ...options.engines[stage]], chosen ?? "",
      `default (${defaults.engines[stage]})`);
    $(`model-${stage}`).value = (settings.models || {})[stage] ?? "";
  }
}

function fillSelect(select, values, chosen, blank) {
  select.replaceChildren(...values.map((v) => new Option(v === "" ? blank : v, v)));
  select.value = chosen;
}

function readSettings() {
  const out = {};
  for (const key of ["S", "I", "F", "fps", "w", "h", "steps", "seed"]) {
    const value = $(`set-${key}`).value.trim();
    out[key] = value === "" ? null : Number(value);
  }
  out.target = $("set-target").value.trim() || null;
  out.easing = $("set-easing").value;
  out.format = $("set-format").value;
  out.engines = {};
  out.models = {};
  for (const stage of ["keyframes", "motion", "upscale"]) {
    out.engines[stage] = $(`engine-${stage}`).value || null;
    out.models[stage] = $(`model-${stage}`).value.trim() || null;
  }
  return out;
}

// ------------------------------------------------------------------ render

function formatSeconds(s) {
  if (s === null || s === undefined) return "";
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.round(s % 60)).padStart(2, "0")}`;
}

const FINISHED = ["done", "failed", "cancelled"];

function showJob(job) {
  const active = job.state === "queued" || job.state === "running";
  $("progress").value = job.progress;
  const eta = job.state === "running" && job.eta_s !== null ? ` · ETA ${formatSeconds(job.eta_s)}` : "";
  const stage = job.stage ? ` · ${job.stage}` : "";
  const stopping = active && job.cancelling ? " · cancelling" : "";
  $("progress-text").textContent = `${job.state} ${Math.round(job.progress * 100)}%${stage}${eta}${stopping}`;
  $("progress-text").dataset.state = job.state;
  $("job-stages").textContent = Object.entries(job.stages)
    .map(([name, s]) => `${name}: ${s.reused} reused, ${s.recomputed} recomputed`).join(" · ");
  $("render").disabled = active;
  $("cancel").hidden = !active;
  $("cancel").disabled = Boolean(job.cancelling);
  if (job.state === "failed") showError(job.error);
}

function forgetJob() {
  if (state.events) state.events.close();
  state.events = null;
  state.job = null;
  $("progress").value = 0;
  $("progress-text").textContent = "";
  delete $("progress-text").dataset.state;
  $("job-stages").textContent = "";
  $("render").disabled = false;
  $("cancel").hidden = true;
}

function follow(jobId) {
  if (state.events) state.events.close();
  state.job = jobId;
  const events = new EventSource(`/api/jobs/${jobId}/events`);
  state.events = events;
  let last = 0;
  events.addEventListener("progress", async (event) => {
    if (state.events !== events) return;  // a stream the page has moved on from
    const job = JSON.parse(event.data);
    showJob(job);
    const now = Date.now();
    if (FINISHED.includes(job.state)) {
      events.close();
      await reloadProject();
      showVideo();
    } else if (now - last > 1000) {
      last = now;
      await refreshFrames();
    }
  });
  events.onerror = () => { events.close(); };
}

function showVideo() {
  const video = state.project.video;
  const preview = $("preview");
  if (!video) {
    preview.hidden = true;
    return;
  }
  const url = `${video.url}?v=${video.version}`;
  const gif = video.format === "gif";
  $("player").hidden = gif;
  $("player-gif").hidden = !gif;
  if (gif) {
    $("player-gif").src = url;
  } else {
    $("player").poster = video.sheet_url ? `${video.sheet_url}?v=${video.version}` : "";
    $("player").src = url;
  }
  $("download").href = url;
  $("download").setAttribute("download", video.filename);
  $("sheet").href = video.sheet_url || "#";
  preview.hidden = false;
}

// ------------------------------------------------------------------- wiring

function wire() {
  $("new-project-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      const { id } = await api("POST", "/api/projects", { name: $("new-project-name").value });
      $("new-project-name").value = "";
      await loadProjects(id);
    });
  });
  $("project-select").addEventListener("change", (event) => {
    if (event.target.value) guarded(() => openProject(event.target.value));
  });
  $("file-input").addEventListener("change", (event) => guarded(async () => {
    await addFiles([...event.target.files]);
    event.target.value = "";
  }));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    guarded(() => addFiles([...event.dataTransfer.files]));
  });
  $("prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const button = $("add-prompt");
    button.disabled = true;
    guarded(async () => {
      const seed = $("prompt-seed").value.trim();
      const prompt = $("prompt-text").value;
      await api("POST", `/api/projects/${state.project.id}/keyframes`, {
        prompt, negative: $("prompt-negative").value || null, seed: seed === "" ? null : Number(seed),
      });
      if ($("prompt-text").value === prompt) $("prompt-text").value = "";  // not what was typed meanwhile
      await reloadProject();
    }).finally(() => { button.disabled = false; });
  });
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      state.project.settings = await api("PUT", `/api/projects/${state.project.id}/settings`, readSettings());
      $("settings-saved").textContent = "saved";
      setTimeout(() => { $("settings-saved").textContent = ""; }, 2000);
      await reloadProject();
    });
  });
  $("interpolate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      $("inbetweens").replaceChildren();
      const { images } = await api("POST", `/api/projects/${state.project.id}/interpolate`, {
        a: $("interp-a").value, b: $("interp-b").value, n: Number($("interp-n").value),
      });
      $("inbetweens").replaceChildren(...images.map((url) => {
        const img = document.createElement("img");
        img.src = url;
        img.alt = "in-between";
        return img;
      }));
    });
  });
  $("render").addEventListener("click", () => guarded(async () => {
    const { job } = await api("POST", `/api/projects/${state.project.id}/render`);
    state.job = job;
    showJob({ state: "queued", progress: 0, stages: {}, eta_s: null });
    await refreshFrames();
    follow(job);
  }));
  $("cancel").addEventListener("click", () => guarded(async () => {
    if (!state.job) return;
    showJob(await api("DELETE", `/api/jobs/${state.job}`));  // the stream says when it has stopped
  }));
}

async function start() {
  wire();
  await guarded(async () => {
    state.options = await api("GET", "/api/options");
    await loadProjects();
  });
  document.body.dataset.ready = "1";
}

start();
