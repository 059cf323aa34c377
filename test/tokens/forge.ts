import { createHmac, generateKeyPairSync, sign, type KeyObject } from "node:crypto";

/** Order n of the P-256 base point, big-endian. */
export const P256_ORDER = Buffer.from(
  "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
  "hex",
);

export function segment(value: unknown): string {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString(
    "base64url",
  );
}

/** Joins a header, a payload and raw signature bytes into a compact JWS. */
export function forge(header: unknown, payload: unknown, signature: Uint8Array): string {
  return `${segment(header)}.${segment(payload)}.${Buffer.from(signature).toString("base64url")}`;
}

/** Splits a compact JWS into its decoded header, payload and signature bytes. */
export function split(token: string): {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signature: Buffer;
  signingInput: string;
} {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString("utf8")) as Record<
      string,
      unknown
    >,
    payload: JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<
      string,
      unknown
    >,
    signature: Buffer.from(signature, "base64url"),
    signingInput: `${header}.${payload}`,
  };
}

/** Replaces the signature of a compact JWS with `signature`, encoded as base64url. */
export function withSignature(token: string, signature: Uint8Array): string {
  const [header, payload] = token.split(".") as [string, string];
  return `${header}.${payload}.${Buffer.from(signature).toString("base64url")}`;
}

/** Builds an HS256 token over `header` and `payload`, keyed with `secret`. */
export function hs256(header: unknown, payload: unknown, secret: Uint8Array | string): string {
  const input = `${segment(header)}.${segment(payload)}`;
  const mac = createHmac("sha256", secret).update(input).digest();
  return `${input}.${mac.toString("base64url")}`;
}

/** Generates an attacker's ES256 key pair. */
export function attackerKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

/** Signs `header.payload` with an ES256 key in the JOSE (P1363) form. */
export function es256(header: unknown, payload: unknown, privateKey: KeyObject): string {
  const input = `${segment(header)}.${segment(payload)}`;
  const signature = sign("sha256", Buffer.from(input), {
    key: privateKey,
    dsaEncoding: "ieee-p1363",
  });
  return `${input}.${signature.toString("base64url")}`;
}

/** Converts a 64-byte P1363 ECDSA signature to its DER (ASN.1 SEQUENCE of two INTEGERs) form. */
export function p1363ToDer(signature: Uint8Array): Buffer {
  const integer = (bytes: Uint8Array): Buffer => {
    let value = Buffer.from(bytes);
    while (value.length > 1 && value[0] === 0) value = value.subarray(1);
    if (value[0]! & 0x80) value = Buffer.concat([Buffer.from([0]), value]);
    return Buffer.concat([Buffer.from([0x02, value.length]), value]);
  };
  const body = Buffer.concat([integer(signature.subarray(0, 32)), integer(signature.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
