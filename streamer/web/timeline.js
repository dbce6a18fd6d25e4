// One stream's speakers over time, from its events (docs/events.md), drawn on a canvas.

export const WINDOW_S = 30; // the timeline shows the last 30 s of the stream's audio

// Light enough for dark text on them (contrast >= 7:1) and apart from each other.
const PALETTE = [
  "#4cc9f0", "#f7b801", "#90e06e", "#ff8fb1", "#b9a3ff",
  "#ffa45c", "#5eead4", "#e2e27a", "#8fb8ff", "#f0a3e6",
];
const UNKNOWN = "#8a93a8";

const STORE_KEY = "streamer.colours";
const assigned = new Map(loadColours()); // label -> palette index, first come first served

function loadColours() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || "[]");
  } catch {
    return [];
  }
}

function saveColours() {
  const names = [...assigned].filter(([key]) => !key.includes("\n"));
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(names));
  } catch {
    // private mode: colours last as long as the page
  }
}

const keyOf = (label, stream) => (isVoice(label) ? `${stream}\n${label}` : label);

/** A label's colour, stable: the first free one from its own starting point (speaker-N
 * from N, a name from a hash of it), kept for the page's life (names across reloads).
 * `speaker-N` belongs to its stream: two streams' speaker-1 are two people. */
export function colourOf(label, stream) {
  if (!label || label === "unknown") return UNKNOWN;
  const key = keyOf(label, stream);
  let index = assigned.get(key);
  if (index === undefined) {
    const voice = /^speaker-(\d+)$/.exec(label);
    let start = voice ? Number(voice[1]) - 1 : 0;
    if (!voice) for (const ch of label) start = (start * 31 + ch.codePointAt(0)) >>> 0;
    const used = new Set(assigned.values());
    index = start % PALETTE.length;
    for (let k = 0; k < PALETTE.length; k++) {
      const i = (start + k) % PALETTE.length;
      if (!used.has(i)) {
        index = i;
        break;
      }
    }
    assigned.set(key, index);
    if (!voice) saveColours();
  }
  return PALETTE[index];
}

/** A voice that was named, or a profile renamed, keeps its colour under the new name. */
export function passColour(from, to, stream) {
  const key = keyOf(from, stream);
  if (assigned.has(key)) {
    assigned.set(to, assigned.get(key));
    saveColours();
  }
}

export const isVoice = (label) => /^speaker-\d+$/.test(label || "");

/** What the events of one stream say: finished segments, the open one, where it is now. */
export class StreamView {
  constructor(id) {
    this.id = id;
    this.clock = null; // () => the stream's audio time now, where the page knows better
    this.reset();
  }

  reset() {
    this.segments = []; // {start, end, label}
    this.region = null; // start of the open speech region
    this.current = null; // {start, label, score}: the open segment's latest speaker event
    this.heard = 0; // the latest stream time the daemon decided or processed
    this.headAt = performance.now(); // when `heard` was learnt
    this.ended = false;
  }

  /** The stream time now: what the page sent, or extrapolated from the latest decision. */
  head() {
    if (this.clock) return Math.max(this.clock(), this.heard);
    if (this.ended) return this.heard;
    return this.heard + Math.min(2, (performance.now() - this.headAt) / 1000);
  }

  advance(seconds) {
    if (seconds > this.heard) {
      this.heard = seconds;
      this.headAt = performance.now();
    }
  }

  /** The stream's state as a snapshot or stream_started notice gives it. */
  restore(state) {
    this.region = state.in_speech ? (state.speaker ? state.speaker.start_s : this.head()) : null;
    this.current = state.speaker
      ? { start: state.speaker.start_s, label: state.speaker.label, score: state.speaker.score }
      : null;
    if (state.speaker) this.advance(state.speaker.emitted_at);
  }

  add(event) {
    this.advance(event.emitted_at);
    switch (event.type) {
      case "speech_start":
        this.region = event.start_s;
        this.current = null;
        break;
      case "speaker":
      case "change":
        this.current = { start: event.start_s, label: event.label, score: event.score };
        if (this.region === null) this.region = event.start_s;
        break;
      case "segment":
        this.segments.push({ start: event.start_s, end: event.end_s, label: event.label });
        if (this.segments.length > 400) this.segments.splice(0, 100);
        if (this.current && this.current.start <= event.start_s) this.current = null;
        break;
      case "speech_end":
        this.region = null;
        this.current = null;
        break;
    }
  }

  /** Who speaks now: {label, score}, {label: null} while deciding, or null in silence. */
  speaker() {
    if (this.region === null) return null;
    return this.current ? { label: this.current.label, score: this.current.score } : { label: null };
  }

  /** Seconds of each label in the last WINDOW_S (for the text summary and the legend). */
  shares() {
    const now = this.head();
    const from = now - WINDOW_S;
    const shares = new Map();
    const count = (start, end, label) => {
      const s = Math.max(start, from);
      if (end > s) shares.set(label, (shares.get(label) || 0) + end - s);
    };
    for (const seg of this.segments) count(seg.start, seg.end, seg.label);
    if (this.current) count(this.current.start, now, this.current.label);
    return shares;
  }
}

/** Draws a StreamView on a canvas that fills its slot. */
export class Timeline {
  constructor(slot, view) {
    this.view = view;
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.className = "timeline";
    slot.append(this.canvas);
    this.legend = document.createElement("ul");
    this.legend.className = "legend";
    slot.append(this.legend);
    this.legendKey = "";
    this.describedAt = 0;
  }

  draw(now = this.view.head()) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const axis = 16;
    const top = 4;
    const band = height - axis - top;
    const from = now - WINDOW_S;
    const x = (t) => ((t - from) / WINDOW_S) * width;
    // The track, and a tick every 5 s of stream time.
    g.fillStyle = "#1b2138";
    roundRect(g, 0, top, width, band, 6);
    g.fill();
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#9aa3ba";
    g.strokeStyle = "#2b3352";
    g.textAlign = "center";
    for (let t = Math.ceil(Math.max(0, from) / 5) * 5; t <= now; t += 5) {
      const px = x(t);
      g.beginPath();
      g.moveTo(px, top);
      g.lineTo(px, top + band);
      g.stroke();
      if (px > 14 && px < width - 14) g.fillText(clock(t), px, height - 3);
    }
    const view = this.view;
    const paint = (start, end, colour) => {
      const a = Math.max(x(start), 0);
      const b = Math.min(x(end), width);
      if (b - a < 0.5) return;
      g.fillStyle = colour;
      roundRect(g, a, top + 3, Math.max(b - a, 2), band - 6, 4);
      g.fill();
    };
    if (view.region !== null) {
      // Speech whose voice is still being decided, or not yet processed: a dim band.
      const start = view.current ? Math.min(view.region, view.current.start) : view.region;
      paint(start, now, "#3a4363");
    }
    for (const seg of view.segments) {
      if (seg.end >= from) paint(seg.start, seg.end, colourOf(seg.label, view.id));
    }
    // The open segment, as far as the daemon has processed; audio it has not yet
    // processed (a backlog) stays dim.
    const known = view.clock ? Math.min(now, view.heard) : now;
    if (view.current) paint(view.current.start, known, colourOf(view.current.label, view.id));
    // "Now", at the right edge.
    g.fillStyle = "#e8ebf5";
    g.fillRect(width - 2, top, 2, band);
    this._describe(now);
  }

  /** The legend (one chip per label heard lately) and the canvas's text alternative. */
  _describe(now) {
    if (now - this.describedAt < 1 && now >= this.describedAt) return;
    this.describedAt = now;
    const shares = [...this.view.shares()].sort((a, b) => b[1] - a[1]);
    const text = shares.length
      ? shares.map(([label, s]) => `${label} ${s.toFixed(0)} s`).join(", ")
      : "silence";
    this.canvas.setAttribute("aria-label", `Last ${WINDOW_S} s of ${this.view.id}: ${text}`);
    const key = shares.map(([label]) => label).join("\n");
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren(
      ...shares.map(([label]) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colourOf(label, this.view.id);
        item.append(swatch, label);
        return item;
      }),
    );
  }
}

function clock(t) {
  const m = Math.floor(t / 60);
  const s = Math.floor(t % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

function roundRect(g, x, y, w, h, r) {
  g.beginPath();
  if (g.roundRect) g.roundRect(x, y, w, h, Math.min(r, w / 2, h / 2));
  else g.rect(x, y, w, h);
}
