// The browser's microphone as 16 kHz int16 frames (or the device's own rate where the
// browser cannot resample; the daemon resamples then).

export const FRAME_S = 0.05; // 50 ms of audio per message
const TARGET_RATE = 16000;

/** Why the microphone could not start, in words, with what to do. */
export class MicError extends Error {
  constructor(code, title, detail) {
    super(title);
    this.code = code;
    this.detail = detail;
  }
}

function explain(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new MicError(
      "denied",
      "The microphone was blocked",
      "Allow this page to use the microphone (the icon at the left of the address bar, " +
        "or the browser's site settings), then press Start microphone again.",
    );
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return new MicError(
      "no_device",
      "No microphone was found",
      "Plug in or enable a microphone, then press Start microphone again.",
    );
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return new MicError(
      "busy",
      "The microphone could not be opened",
      "Another program may be using it; close that program and try again.",
    );
  }
  return new MicError("error", "The microphone could not start", String(error && error.message));
}

export class Microphone {
  /**
   * @param {(frame: ArrayBuffer) => void} onFrame - each int16 frame, in order
   * @param {(rms: number) => void} onLevel - the RMS level of each frame (0..1)
   */
  constructor(onFrame, onLevel) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.context = null;
    this.stream = null;
    this.sampleRate = TARGET_RATE;
  }

  /** Ask for the microphone and start; throws a MicError that says what to do. */
  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new MicError(
        "insecure",
        "This browser allows the microphone only on https:// or on localhost",
        "Open the page as http://127.0.0.1:PORT/ on the daemon's machine (ssh -L " +
          "PORT:127.0.0.1:PORT reaches a remote one), or serve it over HTTPS. " +
          "Watching streams works from here.",
      );
    }
    // The audio graph first: the microphone's first samples are not lost waiting for it.
    let context;
    try {
      context = new AudioContext({ sampleRate: TARGET_RATE, latencyHint: "interactive" });
      await context.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
    } catch (error) {
      if (context) context.close();
      throw explain(error);
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: { ideal: 1 },
          echoCancellation: false, // these three change the voice the model hears
          noiseSuppression: false,
          autoGainControl: false,
        },
        video: false,
      });
    } catch (error) {
      context.close();
      throw explain(error);
    }
    try {
      await this._connect(context);
    } catch (error) {
      this.stop();
      throw explain(error);
    }
  }

  async _connect(context) {
    let source;
    try {
      source = context.createMediaStreamSource(this.stream);
    } catch {
      // Browsers that cannot resample a microphone: its own rate, resampled by the daemon.
      await context.close();
      context = new AudioContext({ latencyHint: "interactive" });
      await context.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
      source = context.createMediaStreamSource(this.stream);
    }
    this.context = context;
    this.sampleRate = context.sampleRate;
    const node = new AudioWorkletNode(context, "int16-frames", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCountMode: "explicit",
      channelCount: 1,
      processorOptions: { chunk: Math.round(this.sampleRate * FRAME_S) },
    });
    node.port.onmessage = ({ data }) => {
      this.onFrame(data.frame);
      this.onLevel(data.rms);
    };
    source.connect(node);
    if (context.state !== "running") await context.resume();
  }

  stop() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context) this.context.close();
    this.stream = null;
    this.context = null;
  }
}
