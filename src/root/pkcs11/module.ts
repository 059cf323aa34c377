import type { Clock } from "../../clock.ts";
import {
  ckrName,
  pkcs11js,
  type Pkcs11Calls,
  type Pkcs11Handle,
  type Pkcs11TokenInfo,
  type Template,
} from "./calls.ts";

/**
 * Arbor's connection to one PKCS#11 token: library initialization, the token found by label, the
 * user login, a pool of sessions and recovery after the token was unreachable.
 *
 * Every call uses the synchronous form of pkcs11js. With SoftHSM 2.6.1 and pkcs11js 2.1.7 the
 * synchronous calls were faster than the asynchronous ones (about 60k against 19k AES-GCM
 * operations per second, measured on a 2-core development machine). Nothing else runs on the
 * event loop during a synchronous call, so one operation (its init and final call) never
 * interleaves with another, and a library re-initialization never races an operation in flight.
 * The material cache keeps root calls off the hot path, so the loop is rarely blocked.
 * NOTE: a module that hangs inside a call (a network HSM without a timeout) blocks the whole
 * process for that long. Switching to the asynchronous calls would need a session per operation
 * in flight.
 */

export type TokenState = "logged-out" | "ready" | "unavailable";

/**
 * Why a token call failed:
 * - `unavailable`: the token or module did not respond and re-connecting failed;
 * - `object-missing`: a key the caller named is not on the token, even after re-connecting;
 * - `rejected`: the token returned an error that re-connecting does not fix (a wrong PIN, a key
 *   whose use is not permitted, an unsupported mechanism). `ckr` names it.
 */
export class Pkcs11TokenError extends Error {
  override readonly name = "Pkcs11TokenError";
  readonly reason: "unavailable" | "object-missing" | "rejected";
  readonly ckr: string | null;

  constructor(
    reason: Pkcs11TokenError["reason"],
    message: string,
    ckr: string | null,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.reason = reason;
    this.ckr = ckr;
  }
}

/** The minimal logger the token needs; pino satisfies it. */
export interface Pkcs11Logger {
  error(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  info(details: Record<string, unknown>, message: string): void;
}

/** Arguments of a unit of work: the calls, a session of its own until it returns, and lookups. */
export interface SessionContext {
  readonly calls: Pkcs11Calls;
  readonly session: Pkcs11Handle;
  /**
   * Returns the one object matching `template`, caching the handle under `cacheKey` until the next
   * re-connect. Throws `object-missing` when none matches and `rejected` when several do.
   */
  find(template: Template, cacheKey: string): Pkcs11Handle;
  /** Returns up to `max` objects matching `template`, without caching. */
  findAll(template: Template, max: number): Pkcs11Handle[];
}

export interface Pkcs11TokenOptions {
  calls: Pkcs11Calls;
  /** CKA_LABEL of the token (CK_TOKEN_INFO.label without its space padding), at most 32 bytes. */
  tokenLabel: string;
  clock: Clock;
  logger: Pkcs11Logger;
  /**
   * Minimum milliseconds between two re-connect attempts while the token is unavailable; calls in
   * between fail at once. A timer also retries at this interval, so the token recovers without
   * a call. Default 5000.
   */
  recoveryIntervalMs?: number;
  /** Idle sessions kept open for reuse. Default 4. */
  maxIdleSessions?: number;
}

// Failures that mean the session, the login or the token itself is gone. A re-connect (new
// sessions, login again, and if that fails a re-initialized library) may fix them. SoftHSM 2.6.1
// returns CKR_GENERAL_ERROR from C_GetTokenInfo and C_Login while its token directory is missing,
// so that code counts too. C_Decrypt's CKR_GENERAL_ERROR (a failed GCM tag) is handled by the
// caller before it gets here.
const CONNECTION_ERRORS: ReadonlySet<string> = new Set([
  "CKR_GENERAL_ERROR",
  "CKR_FUNCTION_FAILED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_MEMORY",
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_TOKEN_NOT_RECOGNIZED",
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_SESSION_COUNT",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_HANDLE_INVALID",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
  "CKR_SLOT_ID_INVALID",
]);

/** Login failures caused by the PIN, which re-trying with the same PIN cannot fix. */
export const PIN_ERRORS: ReadonlySet<string> = new Set([
  "CKR_PIN_INCORRECT",
  "CKR_PIN_INVALID",
  "CKR_PIN_LEN_RANGE",
  "CKR_PIN_LOCKED",
  "CKR_PIN_EXPIRED",
]);

const DEFAULT_RECOVERY_INTERVAL_MS = 5000;
const DEFAULT_MAX_IDLE_SESSIONS = 4;
const pinDecoder = new TextDecoder("utf-8", { fatal: true });

export class Pkcs11Token {
  readonly tokenLabel: string;
  readonly #calls: Pkcs11Calls;
  readonly #clock: Clock;
  readonly #logger: Pkcs11Logger;
  readonly #recoveryIntervalMs: number;
  readonly #maxIdleSessions: number;

  #state: TokenState = "logged-out";
  // A copy of the user PIN, kept while logged in so the token can log in again after an outage.
  #pin: Uint8Array | null = null;
  // Session that keeps the login alive, because PKCS#11 logs the application out when its last
  // session closes. It is never used for operations, so no failed operation closes it.
  #anchor: Pkcs11Handle | null = null;
  #idle: Pkcs11Handle[] = [];
  #handles = new Map<string, Pkcs11Handle>();
  #slot: Pkcs11Handle | null = null;
  #serialNumber: string | null = null;
  #probe: ((context: SessionContext) => void) | null = null;
  #lastAttemptAt = 0;
  #recoveryTimer: NodeJS.Timeout | null = null;
  #failedAttempts = 0;

  constructor(options: Pkcs11TokenOptions) {
    this.#calls = options.calls;
    this.tokenLabel = options.tokenLabel;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#recoveryIntervalMs = options.recoveryIntervalMs ?? DEFAULT_RECOVERY_INTERVAL_MS;
    this.#maxIdleSessions = options.maxIdleSessions ?? DEFAULT_MAX_IDLE_SESSIONS;
  }

  get state(): TokenState {
    return this.#state;
  }

  /** CK_TOKEN_INFO.serialNumber of the token found at the last login or re-connect. */
  get serialNumber(): string | null {
    return this.#serialNumber;
  }

  /**
   * Sets the check a re-connect runs after logging in (the provider looks up its current root
   * key). A re-connect whose check throws counts as failed. A token that responds but lost its
   * objects, as SoftHSM does until it is re-initialized, is then not reported as recovered.
   */
  setProbe(probe: ((context: SessionContext) => void) | null): void {
    this.#probe = probe;
  }

  /**
   * Logs in as the user with `pin` and keeps a copy of it for re-connects; the caller zeroes its
   * own buffer. If the application was already logged in (by an earlier login that was not logged
   * out), it logs out and in again, so a wrong PIN never passes unchecked. Throws `rejected` with
   * the CKR_PIN_* code for a PIN the token rejects, and `unavailable` when the token cannot be
   * reached. After a failure the token stays logged out.
   */
  login(pin: Uint8Array): void {
    if (this.#state !== "logged-out") {
      throw new Error("the PKCS#11 token is already logged in; log out first");
    }
    const copy = Uint8Array.from(pin);
    try {
      this.#connectWithReinitialize(copy, { verifyPin: true, probe: false });
    } catch (error) {
      this.#dropSessions();
      copy.fill(0);
      throw this.#loginFailure(error);
    }
    this.#pin = copy;
    this.#state = "ready";
    this.#failedAttempts = 0;
  }

  #loginFailure(error: unknown): unknown {
    if (error instanceof Pkcs11TokenError) return error;
    const code = ckrName(error);
    if (code === null) return error;
    if (PIN_ERRORS.has(code)) {
      return new Pkcs11TokenError(
        "rejected",
        `the PKCS#11 token ${this.tokenLabel} refused the PIN (${code})`,
        code,
        { cause: error },
      );
    }
    return classify(error) === "connection"
      ? unavailable(this.tokenLabel, "C_Login", error)
      : rejected("C_Login", error);
  }

  /** Logs out, closes every session of this token and zeroes the PIN. Never throws. */
  logout(): void {
    this.#cancelRecovery();
    if (this.#anchor !== null) {
      try {
        this.#calls.C_Logout(this.#anchor);
      } catch {
        // Closing the sessions below ends the login anyway; an unreachable token has none.
      }
    }
    this.#dropSessions();
    this.#pin?.fill(0);
    this.#pin = null;
    this.#state = "logged-out";
  }

  /**
   * Runs `work` on a session of its own and returns its result. A failure that means the
   * connection is gone triggers one re-connect and one retry. When re-connecting fails, the token
   * becomes `unavailable`, and later calls fail at once until the next attempt is due (see
   * `recoveryIntervalMs`). Errors that are not PKCS#11 errors (the caller's own) pass through
   * unchanged. The session of a failed call is closed, because a failed call may leave its
   * operation active (SoftHSM does so after CKR_BUFFER_TOO_SMALL), which would make the next
   * init on that session fail with CKR_OPERATION_ACTIVE.
   */
  run<T>(operation: string, work: (context: SessionContext) => T): T {
    this.#requireConnected(operation);

    for (let attempt = 1; ; attempt++) {
      let session: Pkcs11Handle | null = null;
      try {
        session = this.#acquire();
        const result = work(this.#context(session));
        this.#release(session);
        return result;
      } catch (error) {
        if (session !== null) this.#closeQuietly(session);
        const kind = classify(error);
        if (kind === "foreign") throw error;
        if (kind === "rejected") throw rejected(operation, error);
        if (attempt >= 2) {
          if (kind === "object-missing") throw error;
          if (kind === "fresh-session") throw rejected(operation, error);
          this.#becomeUnavailable(operation, error);
          throw failedAgain(this.tokenLabel, operation, error);
        }
        // CKR_OPERATION_ACTIVE only needs another session; everything else a re-connect.
        if (kind !== "fresh-session") this.#reconnect(operation);
      }
    }
  }

  #requireConnected(operation: string): void {
    if (this.#state === "ready") return;
    if (this.#state === "logged-out") {
      throw new Error(`the PKCS#11 token is logged out; ${operation} needs a login first`);
    }
    if (this.#clock.now() - this.#lastAttemptAt < this.#recoveryIntervalMs) {
      throw new Pkcs11TokenError(
        "unavailable",
        `the PKCS#11 token ${this.tokenLabel} is unavailable; the next re-connect attempt is due within ${this.#recoveryIntervalMs} ms`,
        null,
      );
    }
    this.#reconnect(operation);
  }

  #context(session: Pkcs11Handle): SessionContext {
    return {
      calls: this.#calls,
      session,
      find: (template, cacheKey) => {
        const cached = this.#handles.get(cacheKey);
        if (cached !== undefined) return cached;

        const found = this.#findObjects(session, template, 2);
        if (found.length === 0) {
          throw new Pkcs11TokenError(
            "object-missing",
            `no object matches ${cacheKey} on PKCS#11 token ${this.tokenLabel}`,
            null,
          );
        }
        if (found.length > 1) {
          throw new Pkcs11TokenError(
            "rejected",
            `several objects match ${cacheKey} on PKCS#11 token ${this.tokenLabel}; labels and CKA_ID must be unique`,
            null,
          );
        }
        this.#handles.set(cacheKey, found[0]!);
        return found[0]!;
      },
      findAll: (template, max) => this.#findObjects(session, template, max),
    };
  }

  #findObjects(session: Pkcs11Handle, template: Template, max: number): Pkcs11Handle[] {
    this.#calls.C_FindObjectsInit(session, template);
    const found = this.#calls.C_FindObjects(session, max);
    this.#calls.C_FindObjectsFinal(session);
    return found;
  }

  #acquire(): Pkcs11Handle {
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    return this.#openSession();
  }

  #release(session: Pkcs11Handle): void {
    if (this.#idle.length < this.#maxIdleSessions) this.#idle.push(session);
    else this.#closeQuietly(session);
  }

  #openSession(): Pkcs11Handle {
    const slot = this.#slot;
    if (slot === null) throw tokenNotFound(this.tokenLabel);
    const p = pkcs11js();
    return this.#calls.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
  }

  /**
   * Re-connects after `operation` failed: closes every session, logs in again with the kept PIN and runs the
   * probe. If that fails, it re-initializes the library and tries once more, because SoftHSM
   * reloads a token directory that came back only after C_Finalize and C_Initialize. Throws `unavailable` when
   * both fail. A PIN the token now refuses logs the token out instead of retrying, because real
   * tokens lock the PIN after a few wrong attempts.
   */
  #reconnect(operation: string): void {
    const pin = this.#pin;
    if (pin === null) throw new Error("the PKCS#11 token is logged out");

    this.#lastAttemptAt = this.#clock.now();
    this.#dropSessions();
    try {
      this.#connectWithReinitialize(pin, { verifyPin: false, probe: true });
    } catch (error) {
      this.#dropSessions();
      const code = error instanceof Pkcs11TokenError ? error.ckr : ckrName(error);
      if (code !== null && PIN_ERRORS.has(code)) {
        this.#logger.error(
          { tokenLabel: this.tokenLabel, ckr: code },
          "PKCS#11 token refused the stored PIN while re-connecting; the root is sealed and must be unsealed again",
        );
        this.logout();
        throw new Pkcs11TokenError(
          "unavailable",
          `the PKCS#11 token ${this.tokenLabel} refused the PIN while re-connecting (${code}); unseal again with the current PIN`,
          code,
          { cause: error },
        );
      }
      this.#becomeUnavailable(operation, error);
      throw unavailable(this.tokenLabel, operation, error);
    }

    if (this.#state === "unavailable") {
      this.#logger.info(
        { tokenLabel: this.tokenLabel, failedAttempts: this.#failedAttempts },
        "PKCS#11 token is reachable again",
      );
    }
    this.#state = "ready";
    this.#failedAttempts = 0;
    this.#cancelRecovery();
  }

  #connectWithReinitialize(pin: Uint8Array, options: ConnectOptions): void {
    try {
      this.#connect(pin, options);
      return;
    } catch (error) {
      if (isPinError(error)) throw error;
      this.#dropSessions();
    }
    this.#reinitialize();
    this.#connect(pin, options);
  }

  /** Initializes the library if needed, finds the token, opens the anchor session and logs in. */
  #connect(pin: Uint8Array, options: ConnectOptions): void {
    const p = pkcs11js();
    initializeLibrary(this.#calls);

    const slot = this.#findSlot();
    if (slot === null) throw tokenNotFound(this.tokenLabel);
    this.#slot = slot;
    this.#serialNumber = this.#calls.C_GetTokenInfo(slot).serialNumber.trim();

    const anchor = this.#openSession();
    this.#anchor = anchor;
    // NOTE: pkcs11js 2.1.7 accepts the PIN only as a JavaScript string, which cannot be zeroed;
    // it lives until garbage collection. The byte copy this class keeps is zeroed on logout.
    const pinText = pinDecoder.decode(pin);
    try {
      this.#calls.C_Login(anchor, p.CKU_USER, pinText);
    } catch (error) {
      if (ckrName(error) !== "CKR_USER_ALREADY_LOGGED_IN") throw error;
      if (options.verifyPin) {
        // Another login of this process is still active. Log out so the PIN is checked.
        this.#calls.C_Logout(anchor);
        this.#calls.C_Login(anchor, p.CKU_USER, pinText);
      }
    }

    const probe = this.#probe;
    if (options.probe && probe !== null) {
      const session = this.#openSession();
      probe(this.#context(session));
      this.#release(session);
    }
  }

  #reinitialize(): void {
    try {
      this.#calls.C_Finalize();
    } catch {
      // An uninitialized or broken library is initialized below either way.
    }
    initializeLibrary(this.#calls);
  }

  /** Finds the slot whose token has our label; slot ids change when tokens are initialized. */
  #findSlot(): Pkcs11Handle | null {
    const matches: Pkcs11Handle[] = [];
    for (const slot of this.#calls.C_GetSlotList(true)) {
      let info: Pkcs11TokenInfo;
      try {
        info = this.#calls.C_GetTokenInfo(slot);
      } catch {
        // A slot whose token cannot be read is not the one we want (SoftHSM reports
        // CKR_GENERAL_ERROR for a token whose directory is gone).
        continue;
      }
      if (info.label.trimEnd() === this.tokenLabel) matches.push(slot);
    }
    if (matches.length > 1) {
      throw new Pkcs11TokenError(
        "rejected",
        `${matches.length} PKCS#11 tokens are labelled ${this.tokenLabel}; token labels must be unique`,
        null,
      );
    }
    return matches[0] ?? null;
  }

  #becomeUnavailable(operation: string, error: unknown): void {
    this.#failedAttempts += 1;
    if (this.#state !== "unavailable") {
      this.#logger.error(
        {
          tokenLabel: this.tokenLabel,
          operation,
          ckr: codeOf(error),
          retryIntervalMs: this.#recoveryIntervalMs,
        },
        "PKCS#11 token is unreachable; root calls fail with ROOT_UNAVAILABLE until it answers again",
      );
    }
    this.#state = "unavailable";
    this.#scheduleRecovery();
  }

  #scheduleRecovery(): void {
    if (this.#recoveryTimer !== null) return;
    this.#recoveryTimer = setTimeout(() => {
      this.#recoveryTimer = null;
      if (this.#state !== "unavailable") return;
      try {
        this.#reconnect("recovery");
      } catch {
        // #reconnect schedules the next attempt and logged the outage when it began.
      }
    }, this.#recoveryIntervalMs);
    // The timer must not keep a process alive that has nothing else to do.
    this.#recoveryTimer.unref();
  }

  #cancelRecovery(): void {
    if (this.#recoveryTimer === null) return;
    clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = null;
  }

  /** Closes every session of this token, ignoring failures, and clears the cached handles. */
  #dropSessions(): void {
    for (const session of this.#idle) this.#closeQuietly(session);
    this.#idle = [];
    if (this.#anchor !== null) this.#closeQuietly(this.#anchor);
    this.#anchor = null;
    this.#handles.clear();
  }

  #closeQuietly(session: Pkcs11Handle): void {
    try {
      this.#calls.C_CloseSession(session);
    } catch {
      // The session is already gone with its token, or the module no longer responds.
    }
  }
}

/** C_Initialize with CKF_OS_LOCKING_OK; an already initialized library is fine. */
export function initializeLibrary(calls: Pick<Pkcs11Calls, "C_Initialize">): void {
  try {
    // Without CKF_OS_LOCKING_OK, SoftHSM 2.6.1 under pkcs11js crashes the process with a
    // segmentation fault as soon as a call runs on another thread.
    calls.C_Initialize({ flags: pkcs11js().CKF_OS_LOCKING_OK });
  } catch (error) {
    if (ckrName(error) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw error;
  }
}

interface ConnectOptions {
  /** Log out and in again when the application is already logged in, so the PIN is checked. */
  verifyPin: boolean;
  /** Run the probe after logging in (re-connects do; the first login has nothing to probe yet). */
  probe: boolean;
}

type FailureKind = "connection" | "fresh-session" | "object-missing" | "rejected" | "foreign";

function classify(error: unknown): FailureKind {
  if (error instanceof Pkcs11TokenError) {
    if (error.reason === "object-missing") return "object-missing";
    if (error.reason === "unavailable") return "connection";
    return "foreign";
  }
  const code = ckrName(error);
  if (code === null) return "foreign";
  if (code === "CKR_OPERATION_ACTIVE") return "fresh-session";
  if (CONNECTION_ERRORS.has(code)) return "connection";
  return "rejected";
}

function isPinError(error: unknown): boolean {
  const code = ckrName(error);
  return code !== null && PIN_ERRORS.has(code);
}

function codeOf(error: unknown): string | null {
  return error instanceof Pkcs11TokenError ? error.ckr : ckrName(error);
}

function rejected(operation: string, error: unknown): Pkcs11TokenError {
  const code = codeOf(error);
  return new Pkcs11TokenError(
    "rejected",
    `PKCS#11 ${operation} failed with ${code ?? "an unknown error"}`,
    code,
    { cause: error },
  );
}

function unavailable(tokenLabel: string, operation: string, error: unknown): Pkcs11TokenError {
  const code = codeOf(error);
  const detail = error instanceof Pkcs11TokenError ? error.message : (code ?? String(error));
  return new Pkcs11TokenError(
    "unavailable",
    `the PKCS#11 token ${tokenLabel} is unreachable: re-connecting after ${operation} failed (${detail}); Arbor keeps re-connecting by itself`,
    code,
    { cause: error },
  );
}

function failedAgain(tokenLabel: string, operation: string, error: unknown): Pkcs11TokenError {
  const code = codeOf(error);
  return new Pkcs11TokenError(
    "unavailable",
    `the PKCS#11 token ${tokenLabel} failed ${operation} again right after re-connecting (${code ?? String(error)}); Arbor keeps re-connecting by itself`,
    code,
    { cause: error },
  );
}

function tokenNotFound(tokenLabel: string): Pkcs11TokenError {
  return new Pkcs11TokenError(
    "unavailable",
    `no PKCS#11 token labelled ${tokenLabel} is present`,
    "CKR_TOKEN_NOT_PRESENT",
  );
}
