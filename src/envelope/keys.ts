import { createHash, createHmac } from "node:crypto";

import { constantTimeEqual, encodeLengthPrefixed, hkdfSha256, zeroize } from "../crypto/index.ts";
import { decryptionFailed } from "../errors/index.ts";
import {
  DATA_KEY_BYTES,
  DERIVED_KEY_BYTES,
  LABEL_COMMITMENT,
  LABEL_COMMITMENT_KEY,
  LABEL_MESSAGE_KEY,
} from "./format.ts";

/** Keys of one message. The code that derives them zeroes both once they are no longer needed. */
export interface MessageKeys {
  messageKey: Uint8Array;
  commitmentKey: Uint8Array;
}

/**
 * Derives the message key (frames) and the commitment key from the data key, with the message
 * id as HKDF salt. The random message id makes both keys unique per message even when one data
 * key is cached and reused, which is what allows deterministic frame nonces.
 */
export function deriveMessageKeys(dataKey: Uint8Array, messageId: Uint8Array): MessageKeys {
  return {
    messageKey: hkdfSha256(
      dataKey,
      messageId,
      encodeLengthPrefixed(LABEL_MESSAGE_KEY),
      DERIVED_KEY_BYTES,
    ),
    commitmentKey: hkdfSha256(
      dataKey,
      messageId,
      encodeLengthPrefixed(LABEL_COMMITMENT_KEY),
      DERIVED_KEY_BYTES,
    ),
  };
}

/**
 * Computes the header's commitment value: HMAC-SHA256 under the commitment key over the
 * length-prefixed label and every header byte before the commitment field.
 */
export function computeCommitment(commitmentKey: Uint8Array, headerPrefix: Uint8Array): Uint8Array {
  const hmac = createHmac("sha256", commitmentKey);
  hmac.update(encodeLengthPrefixed(LABEL_COMMITMENT, headerPrefix));
  return new Uint8Array(hmac.digest());
}

/**
 * Checks the header's commitment under `dataKey` and returns the message key only if it
 * matches. This function is the only way the decryptor obtains a message key, so no frame can be
 * decrypted before the commitment has been verified. Throws DECRYPTION_FAILED on a mismatch.
 * Does not zero `dataKey`; the caller does.
 */
export function verifyCommitmentAndDeriveMessageKey(
  dataKey: Uint8Array,
  messageId: Uint8Array,
  headerPrefix: Uint8Array,
  commitment: Uint8Array,
): Uint8Array {
  if (dataKey.length !== DATA_KEY_BYTES) {
    throw decryptionFailed(new Error("the unwrapped data key is not 32 bytes"));
  }

  const { messageKey, commitmentKey } = deriveMessageKeys(dataKey, messageId);
  const expected = computeCommitment(commitmentKey, headerPrefix);
  zeroize(commitmentKey);

  if (!constantTimeEqual(expected, commitment)) {
    zeroize(messageKey);
    throw decryptionFailed(new Error("envelope key commitment does not match"));
  }
  return messageKey;
}

/** SHA-256 of the whole header, which every frame's AAD contains. */
export function headerDigest(header: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(header).digest());
}
