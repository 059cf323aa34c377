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
 * delivered once the kernel accepted all of it. Syslog has no acknowledgement, so records written
 * just before the receiver dies can be lost; receivers that need proof of receipt should use the
 * HTTP exporter. The connection is opened on the first delivery and again after the peer closes it.
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
    if (socket === null || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      // A peer that never closes its side must not hold up the shutdown.
      const timer = setTimeout(() => socket.destroy(), 1000);
      socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
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
            { cause: error },
          ),
        );
      };
      socket.once("error", onError);
      socket.once(readyEvent, () => {
        clearTimeout(timer);
        socket.off("error", onError);
        if (this.#closed) {
          socket.destroy();
          reject(new DeliveryError("unavailable", `syslog exporter ${this.name} is closed`));
          return;
        }
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
    // Probes an idle connection, so a peer that vanished without closing is noticed.
    socket.setKeepAlive(true, 60_000);
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
            { cause: error },
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
 * acknowledgement, so records sent while the receiver is down are lost. The socket is connected,
 * so when the receiver's host responds with ICMP port unreachable, the next delivery fails. The
 * runner then counts the outage and retries at its backoff interval, which loses at most one batch
 * per retry rather than every batch of the outage. Use TCP, TLS or HTTP where loss matters.
 */
class UdpSyslogSink implements Sink {
  readonly name: string;
  readonly #options: SyslogSinkOptions;
  readonly #format: SyslogFormatOptions;
  #socket: DatagramSocket | null = null;
  /** An error the kernel reported for an earlier datagram, such as ECONNREFUSED. */
  #reportedError: Error | null = null;
  #closed = false;

  constructor(options: SyslogSinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.#format = formatOptions(options);
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    if (this.#closed) {
      throw new DeliveryError("unavailable", `syslog exporter ${this.name} is closed`);
    }
    const reported = this.#reportedError;
    if (reported !== null) {
      this.#reportedError = null;
      const { host, port } = this.#options;
      throw new DeliveryError(
        "unavailable",
        `syslog receiver udp://${host}:${port} is not receiving (${message(reported)} for an earlier datagram, which is lost)`,
        { cause: reported },
      );
    }

    const messages = batch.map((record) =>
      formatSyslogMessage(record, this.#format, this.#options.maxMessageBytes),
    );
    const socket = this.#socket ?? (await this.#open());
    for (const message of messages) await this.#send(socket, message.bytes);

    const omitted = messages.filter((message) => message.bodyOmitted).length;
    if (omitted > 0) this.#options.onBodyOmitted?.(omitted);
  }

  close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = null;
    if (socket === null) return Promise.resolve();
    return new Promise<void>((resolve) => socket.close(() => resolve()));
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
        const target = `udp://${host}:${port}`;
        reject(
          new DeliveryError(
            "unavailable",
            `failed to reach syslog receiver ${target}: ${message(error)}`,
            { cause: error },
          ),
        );
      };
      socket.once("error", onError);
      // Node hands a failed lookup or connect to this callback, when one is given, instead of
      // emitting 'error'.
      socket.connect(port, host, (error?: Error) => {
        if (error !== undefined && error !== null) {
          onError(error);
          return;
        }
        socket.off("error", onError);
        // An ICMP port unreachable response arrives as an 'error' event (ECONNREFUSED from
        // recvmsg), after the send that caused it has already succeeded.
        socket.on("error", (error) => this.#drop(socket, error));
        if (this.#closed) {
          socket.close();
          reject(new DeliveryError("unavailable", `syslog exporter ${this.name} is closed`));
          return;
        }
        this.#socket = socket;
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
        this.#drop(socket, null);
        reject(
          new DeliveryError(
            "unavailable",
            `failed to send to the syslog receiver: ${message(error)}`,
            { cause: error },
          ),
        );
      });
    });
  }

  /** Drops a failed socket, so the next batch resolves the host and connects again. */
  #drop(socket: DatagramSocket, reported: Error | null): void {
    if (this.#socket !== socket) return;
    this.#socket = null;
    if (reported !== null) this.#reportedError = reported;
    socket.close();
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
