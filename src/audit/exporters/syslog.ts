import { createSocket, type Socket as DatagramSocket } from "node:dgram";
import { connect as connectTcp, isIP, type Socket } from "node:net";
import { hostname as osHostname } from "node:os";
import { connect as connectTls } from "node:tls";

import {
  DEFAULT_SD_ID,
  formatSyslogMessage,
  frameOctetCounted,
  type SyslogFacility,
  type SyslogFormatOptions,
} from "./syslog-format.ts";
import { DeliveryError, type ExportRecord, type Sink } from "./types.ts";

export type SyslogTransport = "udp" | "tcp" | "tls";

export interface SyslogSinkOptions {
  name: string;
  transport: SyslogTransport;
  host: string;
  port: number;
  facility: SyslogFacility;
  /** Largest UDP datagram in bytes; records that do not fit are sent without their JSON. */
  maxMessageBytes: number;
  /** Limit for connecting and for writing one batch (TCP and TLS), in ms. */
  timeoutMs: number;
  /** PEM certificates trusted for TLS instead of the system's; null uses the system's. */
  ca: string | null;
  structuredDataId?: string;
  /** HOSTNAME field; default os.hostname(). */
  hostname?: string;
  /** Called with the number of records sent without their JSON body. */
  onBodyOmitted?: (records: number) => void;
}

/** Creates the syslog sink for the configured transport. */
export function createSyslogSink(options: SyslogSinkOptions): Sink {
  return options.transport === "udp" ? new UdpSyslogSink(options) : new StreamSyslogSink(options);
}

function formatOptions(options: SyslogSinkOptions): SyslogFormatOptions {
  return {
    facility: options.facility,
    hostname: options.hostname ?? osHostname(),
    procId: String(process.pid),
    structuredDataId: options.structuredDataId ?? DEFAULT_SD_ID,
  };
}

/**
 * Syslog over TCP or TLS with octet-counting framing (RFC 6587, RFC 5425). A batch counts as
 * delivered once the kernel took all of it; syslog has no acknowledgement, so records written just
 * before the receiver dies can be lost. Receivers that need proof of receipt should use the HTTP
 * exporter. The connection is opened on the first delivery and again after the peer closes it.
 */
class StreamSyslogSink implements Sink {
  readonly name: string;
  readonly #options: SyslogSinkOptions;
  readonly #format: SyslogFormatOptions;
  #socket: Socket | null = null;
  #closed = false;

  constructor(options: SyslogSinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.#format = formatOptions(options);
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    if (this.#closed)
      throw new DeliveryError("unavailable", `syslog exporter ${this.name} is closed`);
    if (batch.length === 0) return;

    const frames = Buffer.concat(
      batch.map((record) => frameOctetCounted(formatSyslogMessage(record, this.#format).bytes)),
    );
    const socket = this.#socket ?? (await this.#connect());
    await this.#write(socket, frames);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = null;
    if (socket === null) return;
    await new Promise<void>((resolve) => {
      socket.once("close", () => resolve());
      socket.end();
      // A peer that never closes its side must not hold up the shutdown.
      setTimeout(() => socket.destroy(), 1000).unref();
    });
  }

  #connect(): Promise<Socket> {
    const { host, port, transport, timeoutMs, ca } = this.#options;
    const target = `${transport}://${host}:${port}`;

    return new Promise<Socket>((resolve, reject) => {
      const socket =
        transport === "tls"
          ? connectTls({ host, port, ca: ca ?? undefined, servername: serverName(host) })
          : connectTcp({ host, port });
      const readyEvent = transport === "tls" ? "secureConnect" : "connect";

      const timer = setTimeout(() => {
        socket.destroy(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (error: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          new DeliveryError(
            "unavailable",
            `failed to connect to syslog receiver ${target}: ${message(error)}`,
            {
              cause: error,
            },
          ),
        );
      };
      socket.once("error", onError);
      socket.once(readyEvent, () => {
        clearTimeout(timer);
        socket.off("error", onError);
        this.#adopt(socket);
        resolve(socket);
      });
    });
  }

  /** Keeps the socket for later batches until the peer closes it or it fails. */
  #adopt(socket: Socket): void {
    this.#socket = socket;
    const forget = (): void => {
      if (this.#socket === socket) this.#socket = null;
      socket.destroy();
    };
    // Reading is what lets 'end' fire when the peer closes; a syslog receiver sends nothing.
    socket.resume();
    socket.on("end", forget);
    socket.on("error", forget);
    socket.on("close", forget);
  }

  #write(socket: Socket, data: Buffer): Promise<void> {
    const { timeoutMs } = this.#options;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (error?: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off("close", onClose);
        if (error === undefined || error === null) {
          resolve();
          return;
        }
        if (this.#socket === socket) this.#socket = null;
        socket.destroy();
        reject(
          new DeliveryError(
            "unavailable",
            `failed to write to the syslog receiver: ${message(error)}`,
            {
              cause: error,
            },
          ),
        );
      };
      const onClose = (): void => finish(new Error("the connection closed during the write"));
      // A receiver that stops reading fills the socket buffers and the callback never runs.
      const timer = setTimeout(
        () => finish(new Error(`timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.once("close", onClose);
      socket.write(data, finish);
    });
  }
}

/**
 * Syslog over UDP (RFC 5426), one message per datagram. "Delivered" means sent: UDP has no
 * acknowledgement, so datagrams lost on the way are lost. The socket is connected, so the kernel
 * reports ICMP port-unreachable errors for a receiver that is down, and those batches are retried.
 */
class UdpSyslogSink implements Sink {
  readonly name: string;
  readonly #options: SyslogSinkOptions;
  readonly #format: SyslogFormatOptions;
  #socket: Promise<DatagramSocket> | null = null;
  #closed = false;

  constructor(options: SyslogSinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.#format = formatOptions(options);
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    if (this.#closed)
      throw new DeliveryError("unavailable", `syslog exporter ${this.name} is closed`);

    const messages = batch.map((record) =>
      formatSyslogMessage(record, this.#format, this.#options.maxMessageBytes),
    );
    this.#socket ??= this.#open();
    let socket: DatagramSocket;
    try {
      socket = await this.#socket;
    } catch (error) {
      this.#socket = null;
      throw error;
    }

    for (const message of messages) await this.#send(socket, message.bytes);
    const omitted = messages.filter((message) => message.bodyOmitted).length;
    if (omitted > 0) this.#options.onBodyOmitted?.(omitted);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pending = this.#socket;
    this.#socket = null;
    if (pending === null) return;
    const socket = await pending.catch(() => null);
    if (socket !== null) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  #open(): Promise<DatagramSocket> {
    const { host, port } = this.#options;
    const socket = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
    return new Promise<DatagramSocket>((resolve, reject) => {
      let failed = false;
      const onError = (error: Error): void => {
        if (failed) return;
        failed = true;
        socket.close();
        reject(
          new DeliveryError(
            "unavailable",
            `failed to reach syslog receiver udp://${host}:${port}: ${message(error)}`,
            {
              cause: error,
            },
          ),
        );
      };
      socket.once("error", onError);
      // Node passes a failed lookup to this callback rather than emitting 'error'.
      socket.connect(port, host, (error?: Error) => {
        if (error !== undefined && error !== null) {
          onError(error);
          return;
        }
        socket.off("error", onError);
        // Later errors (such as ICMP port unreachable) surface through send(); this only keeps
        // an unhandled 'error' event from ending the process.
        socket.on("error", () => undefined);
        resolve(socket);
      });
    });
  }

  #send(socket: DatagramSocket, data: Buffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      socket.send(data, (error) => {
        if (error === null || error === undefined) {
          resolve();
          return;
        }
        void this.#discard(socket);
        reject(
          new DeliveryError(
            "unavailable",
            `failed to send to the syslog receiver: ${message(error)}`,
            {
              cause: error,
            },
          ),
        );
      });
    });
  }

  /** Drops a failed socket so the next batch resolves the host and connects again. */
  async #discard(socket: DatagramSocket): Promise<void> {
    const current = this.#socket;
    this.#socket = null;
    if (current !== null && (await current.catch(() => null)) === socket) socket.close();
  }
}

/** TLS SNI accepts host names only, not IP addresses. */
function serverName(host: string): string | undefined {
  return isIP(host) === 0 ? host : undefined;
}

function message(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === "string" && !error.message.includes(code)
    ? `${code} ${error.message}`
    : error.message;
}
