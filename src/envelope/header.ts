import { invalidArgument } from "../errors/index.ts";
import { type EncryptionContext, readContext } from "./context.ts";
import { ByteCursor, ByteWriter, IncompleteInput, malformedEnvelope } from "./cursor.ts";
import {
  COMMITMENT_BYTES,
  ENVELOPE_FORMAT_VERSION,
  ENVELOPE_MAGIC,
  KEY_ID_BYTES,
  KEY_ID_PATTERN,
  MAX_FRAME_SIZE,
  MAX_WRAPPED_DATA_KEY_BYTES,
  MESSAGE_ID_BYTES,
  MIN_FRAME_SIZE,
  MIN_KEY_VERSION,
} from "./format.ts";

/**
 * A parsed envelope header. Before decryption succeeds it is unauthenticated: use it only to
 * choose the key that unwraps `wrappedDataKey`, and act on `context` only after decryption.
 */
export interface EnvelopeHeader {
  readonly formatVersion: typeof ENVELOPE_FORMAT_VERSION;
  /** Opaque id of the service key whose version wrapped the data key. */
  readonly keyId: string;
  readonly keyVersion: number;
  /** 32 random bytes chosen at encryption; the HKDF salt for this message's keys. */
  readonly messageId: Uint8Array;
  readonly context: EncryptionContext;
  /** The data key as wrapped by the service key version; opaque to the envelope code. */
  readonly wrappedDataKey: Uint8Array;
  /** Plaintext bytes per frame. */
  readonly frameSize: number;
  /** Key commitment: HMAC-SHA256 under the commitment key over the rest of the header. */
  readonly commitment: Uint8Array;
}

/** A header and where it ends: the first frame starts at `byteLength`. */
export interface ParsedEnvelopeHeader {
  readonly header: EnvelopeHeader;
  readonly byteLength: number;
}

/** Header fields before the commitment, as written at encryption. */
export interface HeaderPrefixFields {
  keyId: string;
  keyVersion: number;
  messageId: Uint8Array;
  encodedContext: Uint8Array;
  wrappedDataKey: Uint8Array;
  frameSize: number;
}

/** Result of reading a header from input that may end early, as a stream's first chunks do. */
export type HeaderReadResult =
  | {
      readonly complete: true;
      readonly parsed: ParsedEnvelopeHeader;
      readonly prefixLength: number;
    }
  | { readonly complete: false; readonly needed: number };

/** Encodes the header from the magic through the frame size; the commitment follows it. */
export function encodeHeaderPrefix(fields: HeaderPrefixFields): Uint8Array {
  const writer = new ByteWriter();
  writer.writeBytes(ENVELOPE_MAGIC);
  writer.writeUint8(ENVELOPE_FORMAT_VERSION);
  writer.writeUint8(KEY_ID_BYTES);
  writer.writeBytes(new TextEncoder().encode(fields.keyId));
  writer.writeUint32(fields.keyVersion);
  writer.writeBytes(fields.messageId);
  writer.writeBytes(fields.encodedContext);
  writer.writeUint16(fields.wrappedDataKey.length);
  writer.writeBytes(fields.wrappedDataKey);
  writer.writeUint32(fields.frameSize);
  return writer.toBytes();
}

/**
 * Parses the header at the start of a binary envelope, so a server can find which key version
 * unwraps the data key before it decrypts. Input may continue past the header. Throws
 * INVALID_ARGUMENT if `bytes` is not a Uint8Array and DECRYPTION_FAILED if the header is
 * malformed or incomplete.
 */
export function parseEnvelopeHeader(bytes: Uint8Array): ParsedEnvelopeHeader {
  requireBytes(bytes);
  const result = readHeader(bytes);
  if (!result.complete) throw malformedEnvelope("input ends inside the header");
  return result.parsed;
}

/**
 * Reads a header from input that may be incomplete. Every length field is checked against its
 * limit as soon as it is read, so `needed` never exceeds the maximum header size and a hostile
 * length cannot make a caller buffer or allocate more.
 */
export function readHeader(bytes: Uint8Array): HeaderReadResult {
  const cursor = new ByteCursor(bytes);
  try {
    const header = readHeaderFields(cursor);
    const prefixLength = cursor.offset;
    const commitment = cursor.readBytes(COMMITMENT_BYTES).slice();
    return {
      complete: true,
      parsed: { header: Object.freeze({ ...header, commitment }), byteLength: cursor.offset },
      prefixLength,
    };
  } catch (error) {
    if (error instanceof IncompleteInput) return { complete: false, needed: error.needed };
    throw error;
  }
}

/** Returns an independent copy, so a callback that mutates its header cannot change ours. */
export function copyHeader(header: EnvelopeHeader): EnvelopeHeader {
  return Object.freeze({
    ...header,
    messageId: header.messageId.slice(),
    context: Object.freeze({ ...header.context }),
    wrappedDataKey: header.wrappedDataKey.slice(),
    commitment: header.commitment.slice(),
  });
}

export function requireBytes(value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw invalidArgument("ciphertext", typeof value, "a binary envelope must be a Uint8Array");
  }
}

function readHeaderFields(cursor: ByteCursor): Omit<EnvelopeHeader, "commitment"> {
  const magic = cursor.readBytes(ENVELOPE_MAGIC.length);
  if (Buffer.compare(magic, ENVELOPE_MAGIC) !== 0) throw malformedEnvelope("wrong magic bytes");

  const formatVersion = cursor.readUint8();
  if (formatVersion !== ENVELOPE_FORMAT_VERSION) {
    throw malformedEnvelope(`unsupported format version ${formatVersion}`);
  }

  const keyIdLength = cursor.readUint8();
  if (keyIdLength !== KEY_ID_BYTES) throw malformedEnvelope("key id length is not 30");
  const keyId = String.fromCharCode(...cursor.readBytes(keyIdLength));
  if (!KEY_ID_PATTERN.test(keyId)) throw malformedEnvelope("key id is not a service key id");

  const keyVersion = cursor.readUint32();
  if (keyVersion < MIN_KEY_VERSION) throw malformedEnvelope("key version is 0");

  const messageId = cursor.readBytes(MESSAGE_ID_BYTES).slice();
  const context = Object.freeze(readContext(cursor));

  const wrappedLength = cursor.readUint16();
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_DATA_KEY_BYTES) {
    throw malformedEnvelope("wrapped data key length out of range");
  }
  const wrappedDataKey = cursor.readBytes(wrappedLength).slice();

  const frameSize = cursor.readUint32();
  if (frameSize < MIN_FRAME_SIZE || frameSize > MAX_FRAME_SIZE) {
    throw malformedEnvelope("frame size out of range");
  }

  return {
    formatVersion: ENVELOPE_FORMAT_VERSION,
    keyId,
    keyVersion,
    messageId,
    context,
    wrappedDataKey,
    frameSize,
  };
}
