// The page: a live speaker screen, enrollment and naming, all through docs/protocol.md.
//
// Two websockets: a `subscribe` one for every stream's events, the profiles and the
// requests (promote, rename, remove, status), and, while the microphone is on, a
// `stream` one that sends its audio and asks for its enrollments.
//
// Hooks for tests and scripts: #current-speaker (data-label), #mic-toggle and
// window.streamerEvents, every event received, in arrival order.

import { Link } from "./link.js";
import { FRAME_S, MicError, Microphone } from "./mic.js";
import { StreamView, Timeline, colourOf, isVoice, passColour } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const events = [];
window.streamerEvents = events;

const params = new URLSearchParams(location.search);
const token = params.get("token") || undefined;
const endpoint = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
const withToken = (hello) => (token ? { ...hello, token } : hello);
const NAME = /^[A-Za-z0-9 ._-]{1,64}$/;

// The streams the page knows: id -> {info, view, timeline, card, watched}
const streams = new Map();
const unnamed = new Map(); // "stream\nlabel" -> {stream, label}
const named = new Set(); // "stream\nlabel" of voices promoted (late events may still say so)
let profiles = [];
let ownId = newStreamId();

function newStreamId() {
  return `browser-${Math.random().toString(36).slice(2, 8)}`;
}

// Alerts: one shown at a time, the most important first.

const alerts = new Map();
const ALERT_ORDER = ["token", "connection", "stream", "mic", "enroll"];

function setAlert(key, title, detail, code) {
  alerts.set(key, { title, detail, code });
  renderAlert();
}

function clearAlert(key) {
  if (alerts.delete(key)) renderAlert();
}

function renderAlert() {
  const box = $("alert");
  const key = ALERT_ORDER.find((k) => alerts.has(k));
  if (!key) {
    box.hidden = true;
    box.dataset.code = "";
    return;
  }
  const { title, detail, code } = alerts.get(key);
  box.querySelector(".title").textContent = title;
  box.querySelector(".detail").textContent = detail || "";
  box.dataset.code = code || key;
  box.hidden = false;
}

function toast(text, kind = "info") {
  const item = document.createElement("p");
  item.className = `toast ${kind}`;
  item.textContent = text;
  $("toasts").append(item);
  setTimeout(() => item.remove(), 4000);
}

function explainError(error) {
  if (error.code === "unauthorized") {
    return [
      "Wrong or missing token",
      "This daemon has a token: open the page as " +
        `${location.origin}/?token=YOUR_TOKEN, with the token it was started with.`,
    ];
  }
  if (error.code === "limit") {
    return ["The daemon is at its limit", `${error.message}.`];
  }
  return [error.message, ""];
}

// The connection state (the subscribe link's).

const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  limit: "Daemon full, retrying…",
  failed: "Not connected",
};

function setConnection(state, error) {
  const pill = $("connection-state");
  pill.dataset.state = state;
  pill.querySelector(".text").textContent = STATE_TEXT[state];
  if (state === "live") clearAlert("connection");
  else if (state === "reconnecting") {
    setAlert(
      "connection",
      "Lost the daemon: reconnecting",
      "It stopped or restarted; the page reconnects by itself as soon as it is back.",
      "reconnecting",
    );
  } else if (error) {
    const [title, detail] = explainError(error);
    setAlert(error.code === "unauthorized" ? "token" : "connection", title, detail, error.code);
  } else if (state === "connecting" && control.attempt > 0) {
    setAlert(
      "connection",
      "The daemon does not answer",
      "Is `streamer serve` running? The page keeps trying.",
      "unreachable",
    );
  }
}

// Streams, their cards and the picker.

function streamOf(id, info) {
  let entry = streams.get(id);
  if (!entry) {
    entry = { info: info || {}, view: new StreamView(id), timeline: null, card: null };
    entry.watched = id === ownId || (info && info.source === "microphone");
    streams.set(id, entry);
  } else if (info) {
    entry.info = info;
  }
  return entry;
}

function setWatched(entry, watched) {
  entry.watched = watched;
  if (watched && !entry.card) {
    const card = $("stream-card").content.firstElementChild.cloneNode(true);
    card.dataset.stream = entry.view.id;
    card.querySelector(".title").textContent = entry.view.id;
    card.querySelector(".source").textContent = describeSource(entry.info);
    card.querySelector(".speaker").addEventListener("click", () => {
      const label = card.querySelector(".speaker").dataset.label;
      if (isVoice(label)) promote(entry.view.id, label);
    });
    entry.timeline = new Timeline(card.querySelector(".timeline-slot"), entry.view);
    entry.card = card;
    $("watched").append(card);
    renderSpeaker(entry);
  } else if (!watched && entry.card) {
    entry.card.remove();
    entry.card = null;
    entry.timeline = null;
  }
}

function describeSource(info) {
  if (!info || !info.source) return "";
  return info.source === "microphone" ? "the daemon's microphone" : `websocket · ${info.audio}`;
}

function renderPicker() {
  const list = $("stream-picker");
  const others = [...streams.values()].filter((e) => e.view.id !== ownId && !e.view.ended);
  list.replaceChildren(
    ...others.map((entry) => {
      const item = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `watch-${entry.view.id}`;
      box.checked = entry.watched;
      box.addEventListener("change", () => setWatched(entry, box.checked));
      const label = document.createElement("label");
      label.htmlFor = box.id;
      const name = document.createElement("strong");
      name.textContent = entry.view.id;
      const what = document.createElement("span");
      what.textContent = describeSource(entry.info);
      label.append(name, what);
      item.append(box, label);
      return item;
    }),
  );
  $("no-streams").hidden = others.length > 0;
  for (const entry of streams.values()) {
    if (entry.view.id !== ownId) setWatched(entry, entry.watched && !entry.view.ended);
  }
}

function streamStarted(state) {
  const entry = streamOf(state.stream, state);
  if (entry.info.started_at !== state.started_at || entry.view.ended) entry.view.reset();
  entry.info = state;
  entry.view.restore(state);
  renderSpeaker(entry);
}

function streamEnded(message) {
  const entry = streams.get(message.stream);
  if (entry) {
    entry.view.ended = true;
    entry.view.region = null;
    entry.view.current = null;
    renderSpeaker(entry);
    if (message.stream !== ownId) {
      setWatched(entry, false);
      streams.delete(message.stream);
    }
  }
  for (const [key, voice] of unnamed) if (voice.stream === message.stream) unnamed.delete(key);
  renderUnnamed();
  renderPicker();
}

// Who is speaking.

function renderSpeaker(entry) {
  const own = entry.view.id === ownId;
  const root = own ? $("own-card") : entry.card;
  if (!root) return;
  const button = own ? $("current-speaker") : root.querySelector(".speaker");
  const score = own ? $("current-score") : root.querySelector(".score");
  const now = entry.view.speaker();
  const label = now && now.label ? now.label : "";
  button.dataset.label = label;
  button.querySelector(".swatch").style.background = label ? colourOf(label, entry.view.id) : "transparent";
  let text;
  if (label) text = label;
  else if (now) text = "Listening…";
  else if (own && mic.state !== "on") text = mic.state === "off" ? "Microphone off" : "…";
  else text = entry.view.ended ? "Stream ended" : "Silence";
  button.querySelector(".name").textContent = text;
  button.classList.toggle("quiet", !label);
  button.disabled = !isVoice(label);
  button.title = isVoice(label) ? `Name ${label}` : "";
  button.setAttribute(
    "aria-label",
    isVoice(label) ? `${label}, a voice without a name: press to name it` : `Speaking now: ${text}`,
  );
  if (label && typeof now.score === "number") {
    const kind = label === "unknown" ? "not sure yet" : isVoice(label) ? "new voice" : "enrolled";
    score.textContent = `score ${now.score.toFixed(2)} · ${kind}`;
  } else {
    score.textContent = "\u00a0";
  }
}

function onEvent(event) {
  events.push(event);
  const entry = streamOf(event.stream);
  entry.view.add(event);
  if (isVoice(event.label)) {
    const key = `${event.stream}\n${event.label}`;
    if (!unnamed.has(key) && !named.has(key)) {
      unnamed.set(key, { stream: event.stream, label: event.label });
      renderUnnamed();
    }
  }
  if (event.type !== "segment") renderSpeaker(entry);
}

// Profiles and unnamed voices.

function renderProfiles() {
  const list = $("profiles");
  list.replaceChildren(
    ...profiles.map((profile) => {
      const item = document.createElement("li");
      item.dataset.name = profile.name;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(profile.name);
      const text = document.createElement("div");
      text.className = "profile-text";
      const name = document.createElement("strong");
      name.textContent = profile.name;
      const about = document.createElement("span");
      about.textContent = `${profile.speech_s.toFixed(1)} s of speech`;
      about.title = `made with the ${profile.model} model, updated ${profile.updated}`;
      text.append(name, about);
      const rename = button("Rename", `Rename ${profile.name}`, () => renameProfile(profile.name));
      rename.className = "rename";
      const remove = button("Delete", `Delete ${profile.name}`, () => removeProfile(profile.name));
      remove.className = "remove danger";
      item.append(swatch, text, rename, remove);
      return item;
    }),
  );
  $("no-profiles").hidden = profiles.length > 0;
}

function renderUnnamed() {
  const list = $("unnamed");
  const voices = [...unnamed.values()];
  list.replaceChildren(
    ...voices.map(({ stream, label }) => {
      const item = document.createElement("li");
      const chip = button("", `Name ${label} of stream ${stream}`, () => promote(stream, label));
      chip.className = "chip promote";
      chip.dataset.label = label;
      chip.dataset.stream = stream;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(label, stream);
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = stream === ownId ? "this mic" : stream;
      chip.append(swatch, label, where);
      item.append(chip);
      return item;
    }),
  );
  $("no-unnamed").hidden = voices.length > 0;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

/** A modal question; `action(value)` runs on OK and may throw to keep it open. */
function ask({ title, text, value = null, ok = "OK", action }) {
  const dialog = $("dialog");
  const input = $("dialog-input");
  $("dialog-title").textContent = title;
  $("dialog-text").textContent = text;
  $("dialog-ok").textContent = ok;
  $("dialog-ok").classList.toggle("danger", ok === "Delete");
  $("dialog-error").textContent = "";
  const wantsText = value !== null;
  input.hidden = $("dialog-input-label").hidden = !wantsText;
  input.required = wantsText;
  input.value = wantsText ? value : "";
  const form = $("dialog-form");
  form.onsubmit = async (e) => {
    e.preventDefault();
    const given = input.value.trim();
    if (wantsText && !NAME.test(given)) {
      $("dialog-error").textContent = "Use 1-64 letters, digits, spaces, '.', '_' or '-'.";
      return;
    }
    $("dialog-ok").disabled = true;
    try {
      await action(given);
      dialog.close();
    } catch (error) {
      $("dialog-error").textContent = error.message;
    } finally {
      $("dialog-ok").disabled = false;
    }
  };
  $("dialog-cancel").onclick = () => dialog.close();
  dialog.showModal();
  if (wantsText) {
    input.focus();
    input.select();
  } else {
    $("dialog-ok").focus();
  }
}

function promote(stream, label) {
  ask({
    title: `Name ${label}`,
    text: "Who is this? The voice becomes a profile from what the daemon heard of it, and " +
      "every stream calls it by this name from now on.",
    value: "",
    ok: "Save name",
    action: async (name) => {
      passColour(label, name, stream); // before the profiles notice that lists it
      const answer = await control.request({ type: "promote", stream, label, name });
      if (!answer.saved) throw new Error(answer.feedback.map(feedbackText).join(" "));
      named.add(`${stream}\n${label}`);
      unnamed.delete(`${stream}\n${label}`);
      renderUnnamed();
      toast(`${label} is now ${name}.`, "ok");
    },
  });
}

function renameProfile(name) {
  ask({
    title: `Rename ${name}`,
    text: "Every stream uses the new name from its next decision on.",
    value: name,
    ok: "Rename",
    action: async (newName) => {
      passColour(name, newName);
      await control.request({ type: "rename", name, new_name: newName });
      toast(`${name} is now called ${newName}.`, "ok");
    },
  });
}

function removeProfile(name) {
  ask({
    title: `Delete ${name}?`,
    text: "The profile is deleted from the daemon's store; the voice becomes a stranger again.",
    ok: "Delete",
    action: async () => {
      await control.request({ type: "remove", name });
      toast(`${name} was deleted.`);
    },
  });
}

// Enrollment feedback, in words.

const FEEDBACK = {
  ok: ["Enough clear speech.", ""],
  too_little_speech: [
    "Not enough speech.",
    "Record again and keep talking the whole time (read something aloud), or record longer.",
  ],
  no_voice: [
    "No voice was heard.",
    "Check the microphone (the level meter moves when you speak) and record again.",
  ],
  clips_disagree: [
    "Parts of the recording do not sound like the same person.",
    "Record again with only that person speaking, in a quiet room.",
  ],
  close_to_other: [
    "This voice is very close to another profile.",
    "If it is the same person, enroll under that name instead; otherwise the two may be confused.",
  ],
};

function feedbackText(item) {
  const [words, todo] = FEEDBACK[item.code] || [item.message, ""];
  return todo ? `${words} ${todo}` : words;
}

function renderFeedback(done) {
  const list = $("enroll-feedback");
  list.replaceChildren(
    ...done.feedback.map((item) => {
      const li = document.createElement("li");
      li.dataset.code = item.code;
      li.className = item.code === "ok" ? "ok" : done.saved ? "warn" : "bad";
      const [words, todo] = FEEDBACK[item.code] || [item.message, ""];
      const strong = document.createElement("strong");
      strong.textContent = words;
      const detail = document.createElement("span");
      detail.textContent = [todo, `(${item.message})`].filter(Boolean).join(" ");
      li.append(strong, " ", detail);
      return li;
    }),
  );
  const head = document.createElement("li");
  head.className = done.saved ? "ok summary" : "bad summary";
  head.textContent = done.saved
    ? `Saved ${done.name}: ${done.speech_s.toFixed(1)} s of speech. Every stream knows the voice now.`
    : `${done.name} was not saved.`;
  list.prepend(head);
}

let enrolling = null; // {name, seconds}

function setEnrolling(on) {
  $("enroll-record").hidden = on;
  $("enroll-cancel").hidden = !on;
  $("enroll-name").disabled = on;
  $("enroll-seconds").disabled = on;
  $("enroll-status").hidden = false;
}

async function startEnroll(event) {
  event.preventDefault();
  const name = $("enroll-name").value.trim();
  if (!NAME.test(name)) {
    $("enroll-name").reportValidity();
    return;
  }
  const seconds = Number($("enroll-seconds").value);
  $("enroll-feedback").replaceChildren();
  clearAlert("enroll");
  if (mic.state !== "on") {
    await startMic();
    if (!(await mic.whenStreaming())) return;
  }
  enrolling = { name, seconds };
  setEnrolling(true);
  $("enroll-progress").value = 0;
  $("enroll-text").textContent = "Starting…";
  try {
    await mic.link.request({ type: "enroll", name, seconds });
  } catch (error) {
    enrolling = null;
    setEnrolling(false);
    $("enroll-text").textContent = "";
    setAlert("enroll", "Enrollment could not start", error.message, error.code);
  }
}

function onEnrollMessage(message) {
  if (message.type === "enroll_started") {
    $("enroll-text").textContent = `Recording ${message.name}: speak now…`;
  } else if (message.type === "enroll_progress") {
    $("enroll-progress").value = Math.min(1, message.recorded_s / message.seconds);
    const level = message.level_dbfs === null ? "" : ` · level ${message.level_dbfs.toFixed(0)} dBFS`;
    $("enroll-text").textContent =
      `${message.recorded_s.toFixed(1)} of ${message.seconds.toFixed(0)} s · ` +
      `${message.speech_s.toFixed(1)} s of speech${level}`;
  } else if (message.type === "enroll_done") {
    $("enroll-progress").value = 1;
    $("enroll-text").textContent = message.saved ? "Done." : "Not saved.";
    renderFeedback(message);
    enrolling = null;
    setEnrolling(false);
    if (message.saved) $("enroll-name").value = "";
  } else if (message.type === "enroll_cancelled") {
    $("enroll-text").textContent = "Cancelled; nothing was saved.";
    enrolling = null;
    setEnrolling(false);
  }
}

// The microphone and its stream.

const mic = {
  state: "off",
  source: null,
  link: null,
  sent: 0, // samples sent on the current stream
  queue: [],
  level: 0,
  waiters: [],

  setState(state) {
    this.state = state;
    const toggle = $("mic-toggle");
    toggle.dataset.state = state;
    const on = state !== "off" && state !== "denied" && state !== "failed";
    toggle.setAttribute("aria-pressed", String(on));
    toggle.querySelector(".text").textContent = on ? "Stop microphone" : "Start microphone";
    toggle.classList.toggle("recording", on);
    $("own-stream").textContent = on ? ownId : "";
    if (state === "on" || !on) {
      for (const resolve of this.waiters.splice(0)) resolve(state === "on");
    }
    const own = streams.get(ownId);
    if (own) renderSpeaker(own);
  },

  /** Resolves true once the stream is open (false if the microphone stopped instead). */
  whenStreaming() {
    if (this.state === "on") return Promise.resolve(true);
    if (this.state === "off" || this.state === "denied" || this.state === "failed") {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  },

  frame(buffer) {
    if (this.link && this.link.ready) {
      this.link.send(buffer);
      this.sent += buffer.byteLength / 2;
    } else if (this.queue.length < 2 / FRAME_S) {
      this.queue.push(buffer); // until the stream is open: up to 2 s
    }
  },
};

async function startMic() {
  if (mic.state !== "off" && mic.state !== "denied" && mic.state !== "failed") return;
  clearAlert("mic");
  clearAlert("stream");
  mic.setState("starting");
  const source = new Microphone(
    (frame) => mic.frame(frame),
    (rms) => {
      mic.level = rms;
    },
  );
  try {
    await source.start();
  } catch (error) {
    const code = error instanceof MicError ? error.code : "error";
    setAlert("mic", error.message, error.detail || "", `mic_${code}`);
    mic.setState(code === "denied" ? "denied" : "failed");
    return;
  }
  mic.source = source;
  mic.queue = [];
  const own = streamOf(ownId);
  own.view.clock = () => (mic.state === "on" ? mic.sent / source.sampleRate : own.view.heard);
  const hello = () =>
    withToken({
      type: "hello",
      role: "stream",
      stream: ownId,
      sample_rate: source.sampleRate,
      format: "int16",
      channels: 1,
    });
  mic.link = new Link(endpoint, hello, {
    ready: () => {
      mic.sent = 0;
      streamOf(ownId).view.reset();
      for (const buffer of mic.queue.splice(0)) mic.frame(buffer);
      clearAlert("stream");
      mic.setState("on");
    },
    state: (state) => {
      if (state === "reconnecting" && mic.state === "on") mic.setState("reconnecting");
    },
    message: (message) => {
      if (message.type === "error" && message.code === "stream_in_use" && !mic.link.ready) {
        ownId = newStreamId(); // the old id is still open (a page reloaded): take another
        mic.link.rehello();
      } else if (message.type.startsWith("enroll_")) {
        onEnrollMessage(message);
      } else if (message.type === "error" && enrolling && message.id !== undefined) {
        setAlert("enroll", "Enrollment failed", message.message, message.code);
      }
    },
    closed: (error) => {
      if (error && (error.code === "limit" || error.code === "unauthorized")) {
        const [title, detail] = explainError(error);
        setAlert("stream", `The microphone stream was refused: ${title.toLowerCase()}`, detail, error.code);
        stopMic();
        return false;
      }
      if (enrolling) {
        enrolling = null;
        setEnrolling(false);
        $("enroll-text").textContent = "The connection was lost; record again.";
      }
      return true;
    },
  });
  mic.link.open();
}

function stopMic() {
  if (mic.link) {
    if (mic.link.ready) mic.link.send(JSON.stringify({ type: "end" }));
    mic.link.close();
  }
  if (mic.source) mic.source.stop();
  mic.link = null;
  mic.source = null;
  mic.level = 0;
  mic.setState("off");
}

// The subscribe link: everything the page shows.

const control = new Link(endpoint, () => withToken({ type: "hello", role: "subscribe" }), {
  ready: () => {},
  state: setConnection,
  message: (message) => {
    if ("v" in message) {
      onEvent(message);
      return;
    }
    switch (message.type) {
      case "snapshot": {
        const open = new Set(message.streams.map((s) => s.stream));
        for (const [id, entry] of streams) {
          if (!open.has(id) && id !== ownId) {
            setWatched(entry, false);
            streams.delete(id);
          } else if (!open.has(id)) entry.view.ended = true;
        }
        for (const state of message.streams) streamStarted(state);
        profiles = message.profiles;
        renderProfiles();
        renderPicker();
        break;
      }
      case "stream_started":
        streamStarted(message);
        renderPicker();
        break;
      case "stream_ended":
        streamEnded(message);
        break;
      case "profiles":
        profiles = message.profiles;
        renderProfiles();
        break;
      case "status":
        for (const s of message.streams) {
          const entry = streams.get(s.stream);
          if (entry) entry.view.advance(s.processed_s);
        }
        break;
    }
  },
  closed: () => true,
});

// Drawing: timelines and the level meter, once per frame.

let shownLevel = 0;

function frame() {
  const own = streams.get(ownId);
  if (own) {
    if (!own.timeline) own.timeline = new Timeline($("own-timeline"), own.view);
    own.timeline.draw();
  }
  for (const entry of streams.values()) if (entry.timeline && entry !== own) entry.timeline.draw();
  const db = mic.level > 0 ? Math.max(-60, 20 * Math.log10(mic.level)) : -60;
  shownLevel = Math.max(db, shownLevel - 1.5); // falls slowly, rises at once
  const meter = $("level");
  meter.querySelector(".fill").style.width = `${((shownLevel + 60) / 60) * 100}%`;
  meter.setAttribute("aria-valuenow", shownLevel.toFixed(0));
  mic.level *= 0.9;
  requestAnimationFrame(frame);
}

function start() {
  streamOf(ownId);
  $("mic-toggle").addEventListener("click", () => (mic.state === "off" || mic.state === "denied"
    || mic.state === "failed" ? startMic() : stopMic()));
  $("enroll-form").addEventListener("submit", startEnroll);
  $("enroll-cancel").addEventListener("click", () => {
    if (mic.link) mic.link.request({ type: "cancel" }).catch(() => {});
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest("input, select, textarea, dialog");
    if (!typing && e.key === "m" && !e.ctrlKey && !e.metaKey && !e.altKey) $("mic-toggle").click();
  });
  control.open();
  setInterval(() => {
    if (control.ready) control.request({ type: "status" }).catch(() => {});
  }, 1000);
  renderProfiles();
  renderUnnamed();
  renderPicker();
  requestAnimationFrame(frame);
}

start();
