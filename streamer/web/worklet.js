// The audio thread: microphone blocks -> little-endian int16 frames of `chunk` samples.
//
// Channels are averaged to mono; each full frame goes to the page with its RMS level,
// and the page sends it to the daemon as one binary message (docs/protocol.md).

class Int16Frames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = options.processorOptions.chunk;
    this.frame = new Int16Array(this.chunk);
    this.filled = 0;
    this.energy = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    const count = channels.length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < count; c++) x += channels[c][i];
      x /= count;
      if (x > 1) x = 1;
      else if (x < -1) x = -1;
      this.energy += x * x;
      this.frame[this.filled++] = x < 0 ? x * 32768 : x * 32767;
      if (this.filled === this.chunk) {
        const rms = Math.sqrt(this.energy / this.chunk);
        this.port.postMessage({ frame: this.frame.buffer, rms }, [this.frame.buffer]);
        this.frame = new Int16Array(this.chunk);
        this.filled = 0;
        this.energy = 0;
      }
    }
    return true;
  }
}

registerProcessor("int16-frames", Int16Frames);
