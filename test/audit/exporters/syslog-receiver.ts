import { createSocket, type Socket as DatagramSocket } from "node:dgram";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";

/** One RFC 5424 message, parsed. */
export interface SyslogFrame {
  pri: number;
  version: string;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sdId: string | null;
  params: Record<string, string>;
  /** MSG bytes, without a BOM; null when the message has no MSG. */
  msg: Buffer | null;
  bom: boolean;
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Parses an RFC 5424 message with at most one SD-ELEMENT, written independently of the exporter
 * from the ABNF of RFC 5424 section 6.
 */
export function parseSyslog(bytes: Buffer): SyslogFrame {
  let position = 0;
  const field = (): string => {
    const end = bytes.indexOf(0x20, position);
    if (end === -1) throw new Error(`truncated header at byte ${position}`);
    const text = bytes.subarray(position, end).toString("ascii");
    position = end + 1;
    return text;
  };

  const head = /^<(\d{1,3})>(\d{1,3})$/.exec(field());
  if (head === null) throw new Error("invalid PRI or VERSION");
  const frame: SyslogFrame = {
    pri: Number(head[1]),
    version: head[2]!,
    timestamp: field(),
    hostname: field(),
    appName: field(),
    procId: field(),
    msgId: field(),
    sdId: null,
    params: {},
    msg: null,
    bom: false,
  };

  if (bytes[position] === 0x2d) {
    position += 1;
  } else {
    if (bytes[position] !== 0x5b) throw new Error("expected '[' or '-' for STRUCTURED-DATA");
    position += 1;
    const text = bytes.toString("utf8", position);
    let i = 0;
    const idEnd = text.search(/[ \]]/);
    frame.sdId = text.slice(0, idEnd);
    i = idEnd;
    while (text[i] === " ") {
      i += 1;
      const eq = text.indexOf("=", i);
      const name = text.slice(i, eq);
      if (text[eq + 1] !== '"') throw new Error(`PARAM-VALUE of ${name} is not quoted`);
      i = eq + 2;
      let value = "";
      while (text[i] !== '"') {
        if (text[i] === "\\" && ['"', "\\", "]"].includes(text[i + 1]!)) i += 1;
        value += text[i];
        i += 1;
      }
      frame.params[name] = value;
      i += 1;
    }
    if (text[i] !== "]") throw new Error("SD-ELEMENT not closed");
    position += Buffer.byteLength(text.slice(0, i + 1), "utf8");
  }

  if (position < bytes.length) {
    if (bytes[position] !== 0x20) throw new Error("expected SP before MSG");
    let msg = bytes.subarray(position + 1);
    if (msg.subarray(0, 3).equals(BOM)) {
      frame.bom = true;
      msg = msg.subarray(3);
    }
    frame.msg = Buffer.from(msg);
  }
  return frame;
}

/**
 * A TCP (or TLS) syslog receiver on 127.0.0.1 that splits octet-counted frames (RFC 6587
 * section 3.4.1). `stop()` closes the listener and every connection; `start()` listens again on
 * the same port.
 */
export class StreamReceiver {
  readonly frames: SyslogFrame[] = [];
  readonly #tls: { cert: string; key: string } | null;
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor(tls: { cert: string; key: string } | null = null) {
    this.#tls = tls;
  }

  async start(): Promise<void> {
    const server =
      this.#tls === null
        ? createServer((socket) => this.#accept(socket))
        : createTlsServer(this.#tls, (socket) => this.#accept(socket));
    server.on("tlsClientError", () => undefined);
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const socket of this.#sockets) socket.destroy();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const space = buffer.indexOf(0x20);
        if (space === -1) return;
        const length = Number(buffer.subarray(0, space).toString("ascii"));
        if (!Number.isSafeInteger(length)) throw new Error("invalid MSG-LEN");
        if (buffer.length < space + 1 + length) return;
        this.frames.push(parseSyslog(buffer.subarray(space + 1, space + 1 + length)));
        buffer = buffer.subarray(space + 1 + length);
      }
    });
  }
}

/** A UDP syslog receiver on 127.0.0.1: one message per datagram. */
export class DatagramReceiver {
  readonly frames: SyslogFrame[] = [];
  readonly sizes: number[] = [];
  readonly #socket: DatagramSocket = createSocket("udp4");
  port = 0;

  async start(): Promise<void> {
    this.#socket.on("message", (message) => {
      this.sizes.push(message.length);
      this.frames.push(parseSyslog(message));
    });
    await new Promise<void>((resolve) => this.#socket.bind(0, "127.0.0.1", () => resolve()));
    this.port = this.#socket.address().port;
  }

  stop(): Promise<void> {
    return new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}
