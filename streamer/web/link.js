// One websocket to the daemon that says hello, answers requests by id and reconnects.

const RETRY_S = [0.5, 1, 2, 3, 5];
const FATAL = new Set(["unauthorized", "bad_message", "bad_sample_rate", "bad_format"]);

/** An error the daemon sent (docs/protocol.md#errors). */
export class DaemonError extends Error {
  constructor(message) {
    super(message.message);
    this.code = message.code;
  }
}

export class Link {
  /**
   * @param {string} url - the websocket endpoint
   * @param {() => object} hello - the hello to send on each (re)connection
   * @param {object} on - callbacks: ready(msg), message(msg), state(state, error), closed(error)
   */
  constructor(url, hello, on) {
    this.url = url;
    this.hello = hello;
    this.on = on;
    this.ws = null;
    this.ready = false;
    this.wasLive = false;
    this.stopped = false;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.timer = null;
  }

  open() {
    this.stopped = false;
    this._connect();
  }

  /** Close for good (no reconnection). */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.ready = false;
  }

  /** Send a request; resolves with the answer that carries its id, rejects on its error. */
  request(message) {
    if (!this.ready) return Promise.reject(new Error("not connected to the daemon"));
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  /** Say hello again (after the daemon refused the last one, e.g. a stream id in use). */
  rehello() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && !this.ready) {
      this.ws.send(JSON.stringify(this.hello()));
    }
  }

  send(data) {
    if (!this.ready) return false;
    this.ws.send(data);
    return true;
  }

  get buffered() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  _connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let lastError = null;
    ws.onopen = () => ws.send(JSON.stringify(this.hello()));
    ws.onmessage = ({ data }) => {
      const message = JSON.parse(data);
      if (message.type === "error") lastError = message;
      if (!this.ready && message.type === "ready") {
        this.ready = true;
        this.wasLive = true;
        this.attempt = 0;
        this.on.state("live", null);
        this.on.ready(message);
        return;
      }
      const waiting = message.id !== undefined && this.pending.get(message.id);
      if (waiting) {
        this.pending.delete(message.id);
        if (message.type === "error") waiting.reject(new DaemonError(message));
        else waiting.resolve(message);
      }
      this.on.message(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ready = false;
      this.ws = null;
      for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
      this.pending.clear();
      if (this.stopped) return;
      const error = lastError && (event.code === 1008 || event.code === 1013 || !this.wasLive)
        ? lastError
        : null;
      if (error && FATAL.has(error.code)) {
        this.stopped = true;
        this.on.state("failed", error);
        this.on.closed(error);
        return;
      }
      const limited = error && error.code === "limit";
      this.on.state(limited ? "limit" : this.wasLive ? "reconnecting" : "connecting", error);
      const wait = limited ? 5 : RETRY_S[Math.min(this.attempt, RETRY_S.length - 1)];
      this.attempt += 1;
      if (this.on.closed(error) === false) {
        this.stopped = true;
        return;
      }
      this.timer = setTimeout(() => this._connect(), wait * 1000);
    };
  }
}
